"""Length-grouped training batches (prodcat.runtime.batching): less padding, every row once per
epoch, the order a function of seed and epoch (so a resumed run equals an uninterrupted one), and
the `group_by_length` key of every Trainer's settings."""

from pathlib import Path

import pytest
import torch

from prodcat.runtime.batching import GROUP_BY_LENGTH, SeededLengthGroupedSampler, length_grouped, row_lengths
from prodcat.runtime.trainer import run_trainer, training_arguments

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def skewed_lengths(n=600, seed=0):
    """Most rows short, a long tail (as receipt lines are): lengths 2..80."""
    g = torch.Generator().manual_seed(seed)
    short = torch.randint(2, 12, (n * 9 // 10,), generator=g)
    long = torch.randint(12, 81, (n - len(short),), generator=g)
    lengths = torch.cat([short, long])
    return lengths[torch.randperm(n, generator=g)].tolist()


class ToyLM(torch.nn.Module):
    """Mean of the token embeddings regressed onto a number: the order of the rows changes the
    weights that SGD reaches, so a different order shows."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(100, 4)
        self.out = torch.nn.Linear(4, 1)

    def forward(self, input_ids, attention_mask, labels):
        mask = attention_mask.unsqueeze(-1).float()
        mean = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
        return {"loss": ((self.out(mean).squeeze(-1) - labels) ** 2).mean()}


def pad(rows):
    longest = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros((len(rows), longest), dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, : len(r["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in rows])}


def toy_rows(lengths):
    return [
        {"input_ids": [(i * 7 + k) % 97 + 1 for k in range(n)], "labels": float(n % 5)} for i, n in enumerate(lengths)
    ]


def toy_args(tmp_path, grouped: bool, **overrides):
    from transformers import TrainingArguments

    settings = {"per_device_train_batch_size": 16, "num_train_epochs": 2, "seed": 3, GROUP_BY_LENGTH: grouped}
    fixed = dict(output_dir=str(tmp_path / "ckpt"), report_to="none", use_cpu=True, disable_tqdm=True)
    return training_arguments(TrainingArguments, {**settings, **overrides}, "toy settings", **fixed)


def epoch_batches(trainer, epoch):
    loader = trainer.get_train_dataloader()
    loader.set_epoch(epoch)
    return [list(batch) for batch in loader.batch_sampler]


def test_grouping_cuts_padding_and_keeps_every_row_once_per_epoch(tmp_path):
    from transformers import Trainer

    lengths = skewed_lengths()
    rows = toy_rows(lengths)
    padded = {}
    for grouped in (False, True):
        trainer = length_grouped(Trainer)(
            model=ToyLM(), args=toy_args(tmp_path, grouped), train_dataset=rows, data_collator=pad
        )
        assert trainer.args.train_sampling_strategy == (GROUP_BY_LENGTH if grouped else "random")
        tokens = 0
        for epoch in (0, 1):
            batches = epoch_batches(trainer, epoch)
            assert sorted(i for batch in batches for i in batch) == list(range(len(rows)))  # each row once
            assert all(len(batch) == 16 for batch in batches[:-1])
            tokens += sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
        padded[grouped] = tokens
        if grouped:
            first, second = epoch_batches(trainer, 0), epoch_batches(trainer, 1)
            assert first != second  # a new order each epoch ...
            assert epoch_batches(trainer, 0) == first  # ... drawn from seed and epoch alone
            assert max(lengths[i] for i in first[0]) == max(lengths)  # the longest batch first
    real = 2 * sum(lengths)
    print(f"padded tokens per 2 epochs: random {padded[False]}, grouped {padded[True]}, real {real}")
    assert padded[True] < 0.6 * padded[False]
    assert padded[True] - real < 0.3 * (padded[False] - real)  # padding itself cut by 70 % or more


def test_the_seq2seq_rows_are_grouped_by_source_plus_target_length():
    from prodcat.labelers.seq2seq import ExampleDataset

    data = ExampleDataset(
        [{"input_ids": [1, 2], "attention_mask": [1, 1], "labels": [5] * 30}, {"input_ids": [1] * 9, "labels": [2]}]
    )
    assert row_lengths(data) == [32, 10]


def test_a_datasets_table_is_grouped_by_its_input_ids_lengths_read_from_arrow():
    from datasets import Dataset

    table = Dataset.from_list([{"input_ids": [1] * n, "completion_mask": [0] * n} for n in (3, 9, 1, 4)])
    assert row_lengths(table) == [3, 9, 1, 4]
    assert row_lengths(table.select([3, 1])) == [4, 9]


def test_the_sampler_order_does_not_depend_on_the_process_count():
    a = SeededLengthGroupedSampler(skewed_lengths(), group_size=32, seed=5)
    b = SeededLengthGroupedSampler(skewed_lengths(), group_size=32, seed=5)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) and sorted(a) == list(range(600))


def _toy_run(tmp_path, callbacks=()):
    from transformers import Trainer, set_seed

    set_seed(0)
    args = toy_args(tmp_path, True, save_strategy="steps", save_steps=5, logging_steps=1)
    rows = toy_rows(skewed_lengths(n=128))  # 8 steps an epoch, 16 in all
    return run_trainer(
        Trainer, args, signature="toy", callbacks=callbacks, model=ToyLM(), train_dataset=rows, data_collator=pad
    )


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    from transformers import TrainerCallback

    class KillAtTheSecondSave(TrainerCallback):  # step 10: in the second epoch, 2 of its 8 steps done
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 10:
                raise KeyboardInterrupt("killed")

    whole = _toy_run(tmp_path / "whole").trainer.model.state_dict()
    with pytest.raises(KeyboardInterrupt):
        _toy_run(tmp_path / "killed", [KillAtTheSecondSave()])
    resumed = _toy_run(tmp_path / "killed")
    assert Path(resumed.resumed_from).name == "checkpoint-10" and resumed.steps_run == 6
    for name, value in resumed.trainer.model.state_dict().items():
        torch.testing.assert_close(value, whole[name], msg=name)


def test_group_by_length_is_a_setting_of_every_trainer_on_for_the_namer_by_default(tmp_path):
    from prodcat.labelers.seq2seq import training_arguments as labeler_arguments
    from prodcat.names.lora import DEFAULT_TRAIN_PARAMS, sft_config

    params = {"per_device_train_batch_size": 4, "seed": 1, "learning_rate": 1e-3, "num_train_epochs": 1}
    on = labeler_arguments({**params, GROUP_BY_LENGTH: True}, tmp_path, "cpu", torch.float32)
    off = labeler_arguments({**params, GROUP_BY_LENGTH: False}, tmp_path, "cpu", torch.float32)
    unset = labeler_arguments(params, tmp_path, "cpu", torch.float32)
    assert (on.train_sampling_strategy, off.train_sampling_strategy) == (GROUP_BY_LENGTH, "random")
    assert unset.train_sampling_strategy == "random"  # the labelers' schema default: false
    assert DEFAULT_TRAIN_PARAMS[GROUP_BY_LENGTH] is True
    namer = sft_config(DEFAULT_TRAIN_PARAMS, tmp_path, 64, "cpu", torch.float32)
    assert namer.train_sampling_strategy == GROUP_BY_LENGTH
