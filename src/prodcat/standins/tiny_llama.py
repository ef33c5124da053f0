"""A tiny, randomly initialised stand-in for Llama-3.1-8B-Instruct, built offline.

The name-synthesis branch (teacher, LoRA namer, merged model, inference) must run and be tested on a
CPU without the model hub. This module writes a directory that `AutoTokenizer` and
`AutoModelForCausalLM.from_pretrained` load exactly as they load the real model: a byte-level BPE
tokenizer with the Llama-3.1 special tokens and chat template (eos = <|eot_id|>), and a
`LlamaForCausalLM` with a few layers, saved in bf16 safetensors like the real checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

BOS = "<|begin_of_text|>"
EOS_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
PAD = "<|finetune_right_pad_id|>"  # the padding token Llama-3.1 reserves for fine-tuning
SPECIAL_TOKENS = (BOS, EOS_TEXT, START_HEADER, END_HEADER, EOT, PAD)
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The fixed text of the template's system header (a tokenizer corpus should contain it).
CHAT_HEADER_TEXT = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"

# The structure of the Llama-3.1 Instruct template (system header with the knowledge/today dates,
# one header + content + <|eot_id|> per message, assistant header as generation prompt), without
# the tool-calling branches that this project never uses.
LLAMA31_CHAT_TEMPLATE = (
    "{{- bos_token }}\n"
    '{%- if not date_string is defined %}{%- set date_string = "26 Jul 2024" %}{%- endif %}\n'
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content'] | trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    '    {%- set system_message = "" %}\n'
    "{%- endif %}\n"
    '{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}\n'
    '{{- "Cutting Knowledge Date: December 2023\\n" }}\n'
    '{{- "Today Date: " + date_string + "\\n\\n" }}\n'
    "{{- system_message }}\n"
    '{{- "<|eot_id|>" }}\n'
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim "
    "+ '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n"
)


def build_tiny_tokenizer(texts: list[str], *, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`, with the Llama-3.1 special tokens and template."""
    if not texts:
        raise ValueError("build_tiny_tokenizer needs at least one training text")
    core = Tokenizer(models.BPE())
    # Llama-3's pre-tokenizer: its split regex (a run of newlines is one piece whatever follows, so a
    # prompt ending in "\n\n" tokenizes as a prefix of prompt + answer), then bytes to symbols.
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    # Like the real Llama-3 tokenizer: plain encoding prepends <|begin_of_text|>; the chat template
    # writes it itself, so chat prompts are encoded with add_special_tokens=False.
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, core.token_to_id(BOS))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOT, pad_token=PAD, clean_up_tokenization_spaces=False
    )
    tokenizer.chat_template = LLAMA31_CHAT_TEMPLATE
    tokenizer.model_max_length = 131072
    return tokenizer


def build_tiny_llama(
    out_dir,
    texts: list[str],
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    seed: int = 0,
    tokenizer=None,
) -> Path:
    """Write a tiny random Llama-3.1-shaped chat model (tokenizer + bf16 safetensors) to `out_dir`.

    `tokenizer`: use this one (e.g. the real Llama-3.1 tokenizer of `llama3_tokenizer`) instead of
    a byte-level BPE trained on `texts`; the model's vocabulary is its size."""
    out_dir = Path(out_dir)
    if tokenizer is None:
        tokenizer = build_tiny_tokenizer(texts, vocab_size=vocab_size)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    # stop on <|eom_id|> too where the vocabulary has it (the real one does: 128001, 128008, 128009)
    eom = tokenizer.get_vocab().get("<|eom_id|>")
    stops = [ids[EOS_TEXT], ids[EOT]] if eom is None else [ids[EOS_TEXT], eom, ids[EOT]]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=2048,
        bos_token_id=ids[BOS],
        eos_token_id=stops,
        pad_token_id=ids[PAD],
        tie_word_embeddings=False,  # Llama-3.1-8B keeps a separate lm_head
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    # The real checkpoint ships a sampling generation config; greedy use overrides it at call time.
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=stops, do_sample=True, temperature=0.6, top_p=0.9
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny llama: %d parameters, vocab %d, written to %s", n_params, len(tokenizer), out_dir)
    return out_dir


# ---- a stand-in's pretraining --------------------------------------------------------------------
# A random-init stand-in knows no products, so as a teacher it could only echo the receipt line. A
# short warm-up on (teacher prompt → true product name) pairs gives it what the real Llama brings
# from pretraining. Defaults: what config.yaml's tiny.llama.warmup holds.
DEFAULT_PRETRAINING: dict = {
    "steps": 300,
    "batch_size": 32,
    "learning_rate": 5e-3,
    "warmup_steps": 20,
    "student_share": 0.0,
    "seed": 0,
}


def _common_prefix_length(sequences: list[list[int]]) -> int:
    """How many leading tokens every sequence shares."""
    shortest = min(map(len, sequences))
    first = sequences[0]
    for n in range(shortest):
        if any(sequence[n] != first[n] for sequence in sequences):
            return n
    return shortest


def answer_loss(model, prompts: list[list[int]], answers: list[list[int]], *, pad_id: int, shared: int = 0):
    """Mean cross-entropy of the answer tokens after their prompts (one batch).

    Rows are left-padded, so the answers end every row and only their logits are computed
    (`logits_to_keep`). The first `shared` tokens, the same in every prompt, run once and reach
    the rows through the KV cache: the same loss and gradients as running every prompt whole."""
    import torch
    from transformers import DynamicCache

    rows = len(prompts)
    rests = [prompt[shared:] + answer for prompt, answer in zip(prompts, answers)]
    length, keep = max(map(len, rests)), max(map(len, answers))
    input_ids = torch.full((rows, length), pad_id, dtype=torch.long)
    attention = torch.zeros((rows, length), dtype=torch.long)
    labels = torch.full((rows, keep), -100, dtype=torch.long)
    for k, (rest, answer) in enumerate(zip(rests, answers)):
        input_ids[k, length - len(rest) :] = torch.tensor(rest)
        attention[k, length - len(rest) :] = 1
        labels[k, keep - len(answer) :] = torch.tensor(answer)
    positions = shared + (attention.cumsum(1) - 1).clamp(min=0)
    cache = None
    if shared:
        cache = DynamicCache(config=model.config)
        model.model(input_ids=torch.tensor([prompts[0][:shared]]), cache=cache, use_cache=True)
        cache.batch_repeat_interleave(rows)
        attention = torch.cat([torch.ones((rows, shared), dtype=torch.long), attention], dim=1)
    # the last keep + 1 positions: each predicts the next token; the final one has none
    logits = model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        cache=cache,
        use_cache=cache is not None,
        logits_to_keep=keep + 1,
    ).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def pretrain_tiny_llama(model_dir, rows, templates: dict, params: dict | None = None) -> dict:
    """Train the stand-in saved in `model_dir` to answer the teacher's chat prompt for each row of
    `rows` (description, price, the four labels) with the row's `name`, then save it back (bf16
    safetensors, as built). Returns a summary (rows, steps, losses, seconds).

    A plain causal-LM loop, fp32 on the CPU: AdamW, linear warm-up and decay, loss on the answer and
    its <|eot_id|> only (`answer_loss`). Prompts are encoded exactly as generation encodes them (the
    chat template, no added special tokens). Their common beginning (chat header, system message:
    about half of a prompt) runs once a step, which takes ~40 % off a step."""
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prodcat import LEVELS
    from prodcat.names.prompts import student_messages, teacher_messages
    from prodcat.runtime.params import merge_params

    params = merge_params(DEFAULT_PRETRAINING, params, "parameter(s) of the pretraining")
    missing = [c for c in ("description", "name", *LEVELS) if c not in rows.columns]
    if missing:
        raise ValueError(f"pretraining rows: missing column(s) {missing}")
    if len(rows) == 0 or params["steps"] < 1:
        raise ValueError(f"pretraining needs rows and steps >= 1 (got {len(rows)} rows, {params['steps']} steps)")
    started = time.time()
    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    records = rows.to_dict("records")
    # A share of the rows in the student's prompt (no labels): a pretrained LLM reads receipt lines
    # without labels too, only less well.
    n_student = round(float(params["student_share"]) * len(records))
    as_student = set(
        torch.randperm(len(records), generator=torch.Generator().manual_seed(int(params["seed"]) + 1))[
            :n_student
        ].tolist()
    )
    chats = [
        (student_messages if i in as_student else teacher_messages)(row, templates) for i, row in enumerate(records)
    ]
    prompts = [tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) for chat in chats]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    eot = tokenizer.convert_tokens_to_ids(EOT)
    answer_ids = [
        ids + [eot] for ids in tokenizer([str(r["name"]) for r in records], add_special_tokens=False)["input_ids"]
    ]
    shared = _common_prefix_length(prompt_ids)

    steps, batch_size = int(params["steps"]), int(params["batch_size"])
    generator = torch.Generator().manual_seed(int(params["seed"]))
    torch.manual_seed(int(params["seed"]))
    order: list[int] = []
    while len(order) < steps * batch_size:  # epochs over the rows, each in a fresh random order
        order += torch.randperm(len(records), generator=generator).tolist()
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(params["learning_rate"]), weight_decay=0.0)
    warmup = max(int(params["warmup_steps"]), 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, 1.0 - step / steps)
    )
    losses = []
    model.train()
    for step in range(steps):
        batch = order[step * batch_size : (step + 1) * batch_size]
        loss = answer_loss(
            model,
            [prompt_ids[i] for i in batch],
            [answer_ids[i] for i in batch],
            pad_id=tokenizer.pad_token_id,
            shared=shared,
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log.info("pretraining step %d/%d: loss %.3f", step + 1, steps, losses[-1])
    model.eval()
    model.to(torch.bfloat16).save_pretrained(model_dir)
    tail = losses[-min(20, len(losses)) :]
    summary = {
        "rows": len(records),
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": float(params["learning_rate"]),
        "student_prompts": n_student,
        "shared_prompt_tokens": shared,
        "loss_first": losses[0],
        "loss_last": sum(tail) / len(tail),
        "seconds": round(time.time() - started, 1),
    }
    log.info("tiny llama pretrained: %s", summary)
    return summary
