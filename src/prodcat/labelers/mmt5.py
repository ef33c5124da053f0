"""Multimodal ByT5 labeler (the paper's "Labeler 3"; README stage `train_labeler`): text plus retailer and price.

The retailer id goes through a learned embedding (index 0 is a learned UNKNOWN bucket, so a
retailer never seen in training does not crash prediction). Training rows all have known
retailers, so the UNKNOWN row would never get a gradient and an unseen retailer would meet a random
vector; with ``retailer_dropout`` p, each training row (drawn anew every step, like dropout) sees
UNKNOWN instead of its retailer with probability p, so the bucket learns "some retailer". The
price is min-max scaled with the training range, clipped to [0, 1], and projected by a linear
layer, while a missing price uses its own learned vector instead of a magic number. Both side
vectors are concatenated with the encoder's first hidden state and a linear layer maps them back
to ``d_model``:

- ``fusion="first"`` (the paper) writes the result over encoder position 0;
- ``fusion="prepend"`` adds it as an extra position in front of the encoder states (and
  extends the attention mask by one attended position).

The fusion happens inside the encoder call that both ``forward`` and ``generate`` use
(:meth:`MultimodalT5ForConditionalGeneration.get_encoder`), so greedy and beam search decode
from the fused states: generate expands the already-fused ``encoder_outputs`` for beams.

Checkpoints are ordinary ``save_pretrained`` folders (config.json + model.safetensors) whose
config has ``model_type="prodcat_mmt5"``. Open them with this class, ``AutoModelForSeq2SeqLM``
(registered on import) or :func:`load_labeler_model`.

Refusing the plain loader. On its own, transformers 5 only *warns* when a plain
``T5ForConditionalGeneration`` is given a foreign ``model_type`` and only *reports* the
``side_fusion.*`` weights as unexpected, i.e. it would silently drop the side features; no
property of the files alone can make it raise without breaking Trainer's checkpoint
reloading. So importing this module also registers a weight-conversion rule for
``model_type="prodcat_mmt5"`` (transformers' ``register_checkpoint_conversion_mapping``) that
passes ``shared.weight`` through unchanged for the multimodal class and fails for any other
class. ``T5ForConditionalGeneration.from_pretrained(multimodal_dir)`` then raises a
RuntimeError, after a load report whose CONVERSION entry carries
:class:`MultimodalCheckpointError`'s message. The refusal needs ``prodcat.labelers.mmt5`` to have been
imported; :func:`load_labeler_model` does not depend on it.
"""

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    T5Config,
    T5ForConditionalGeneration,
)
from transformers import initialization as init
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter
from transformers.modeling_outputs import BaseModelOutput

MODEL_TYPE = "prodcat_mmt5"
UNKNOWN_RETAILER_ID = 0


class MultimodalCheckpointError(ValueError):
    """A multimodal labeler checkpoint was opened with a loader that would drop its side features."""


@strict
class MultimodalT5Config(T5Config):
    """T5 config plus the side-feature vocabulary, price scaler and fusion mode.

    ``retailers`` is the training retailer vocabulary; retailer ``retailers[i]`` gets id
    ``i + 1`` and id 0 is the UNKNOWN bucket. ``price_min``/``price_max`` are the min-max
    scaler fitted on the training prices (missing prices excluded).
    """

    model_type = MODEL_TYPE

    retailers: list[str] | None = None
    side_dim: int = 8
    price_min: float | int = 0.0
    price_max: float | int = 1.0
    fusion: Literal["first", "prepend"] = "first"
    retailer_dropout: float | int = 0.0

    def __post_init__(self, **kwargs):
        self.retailers = list(self.retailers or [])
        self.price_min = float(self.price_min)
        self.price_max = float(self.price_max)
        self.retailer_dropout = float(self.retailer_dropout)
        super().__post_init__(**kwargs)

    def validate_side_features(self):
        """Reject settings the side-feature layers cannot represent faithfully."""
        if self.side_dim < 1:
            raise ValueError(f"side_dim must be >= 1, got {self.side_dim}")
        if len(set(self.retailers)) != len(self.retailers):
            raise ValueError("retailers must not contain duplicates")
        if not (math.isfinite(self.price_min) and math.isfinite(self.price_max)):
            raise ValueError(f"price_min/price_max must be finite, got {self.price_min}, {self.price_max}")
        if self.price_max < self.price_min:
            raise ValueError(f"price_max ({self.price_max}) < price_min ({self.price_min})")
        if not 0.0 <= self.retailer_dropout < 1.0:
            raise ValueError(f"retailer_dropout must be in [0, 1), got {self.retailer_dropout}")


def encode_side_features(
    config: MultimodalT5Config,
    retailers: Sequence[str | None],
    prices: Sequence[float | None],
) -> tuple[torch.LongTensor, torch.FloatTensor]:
    """Map raw retailers and prices to model inputs; always encode with the model's own config.

    A retailer outside ``config.retailers`` (or None) becomes the UNKNOWN id 0; a missing
    price (None or NaN) stays NaN, which the model replaces with its learned missing vector
    (the model treats every non-finite price as missing).
    """
    if len(retailers) != len(prices):
        raise ValueError(f"{len(retailers)} retailers but {len(prices)} prices")
    index = {name: i + 1 for i, name in enumerate(config.retailers)}
    retailer_ids = torch.tensor([index.get(r, UNKNOWN_RETAILER_ID) for r in retailers], dtype=torch.long)
    price_values = torch.tensor([math.nan if p is None else float(p) for p in prices], dtype=torch.float32)
    return retailer_ids, price_values


class SideFeatureFusion(nn.Module):
    """Fuses retailer and price vectors into the first encoder state (or a new first state)."""

    def __init__(self, config: MultimodalT5Config):
        super().__init__()
        self.fusion_mode = config.fusion
        self.retailer_dropout = config.retailer_dropout
        self.price_min = config.price_min
        self.price_range = config.price_max - config.price_min
        self.retailer_embedding = nn.Embedding(len(config.retailers) + 1, config.side_dim)
        self.price_projection = nn.Linear(1, config.side_dim)
        self.missing_price = nn.Parameter(torch.zeros(config.side_dim))
        self.fusion = nn.Linear(config.d_model + 2 * config.side_dim, config.d_model)

    def scale_prices(self, prices: torch.Tensor) -> torch.Tensor:
        """Min-max scale with the training range, clipped to [0, 1]; a degenerate range maps to 0."""
        if self.price_range <= 0:
            return torch.zeros_like(prices)
        return ((prices - self.price_min) / self.price_range).clamp(0.0, 1.0)

    def forward(self, hidden_states: torch.Tensor, retailer_ids: torch.Tensor, prices: torch.Tensor) -> torch.Tensor:
        batch = hidden_states.shape[0]
        if retailer_ids.shape != (batch,) or prices.shape != (batch,):
            raise ValueError(
                f"retailer_ids and prices must have shape ({batch},), got "
                f"{tuple(retailer_ids.shape)} and {tuple(prices.shape)}"
            )
        dtype = self.fusion.weight.dtype
        retailer_ids = retailer_ids.to(hidden_states.device)
        if self.training and self.retailer_dropout > 0:
            hidden = torch.rand(retailer_ids.shape, device=retailer_ids.device) < self.retailer_dropout
            retailer_ids = retailer_ids.masked_fill(hidden, UNKNOWN_RETAILER_ID)
        retailer_vectors = self.retailer_embedding(retailer_ids)
        prices = prices.to(device=hidden_states.device, dtype=torch.float32)
        missing = ~torch.isfinite(prices)
        scaled = self.scale_prices(torch.where(missing, torch.zeros_like(prices), prices))
        price_vectors = self.price_projection(scaled.to(dtype).unsqueeze(-1))
        price_vectors = torch.where(missing.unsqueeze(-1), self.missing_price.to(dtype), price_vectors)
        first = hidden_states[:, 0, :]
        fused = self.fusion(torch.cat([first.to(dtype), retailer_vectors, price_vectors], dim=-1))
        fused = fused.to(hidden_states.dtype).unsqueeze(1)
        if self.fusion_mode == "first":
            return torch.cat([fused, hidden_states[:, 1:, :]], dim=1)
        return torch.cat([fused, hidden_states], dim=1)


class _FusingEncoder(nn.Module):
    """The encoder that generate() and forward() call: the T5 encoder followed by the fusion.

    Built on demand by ``get_encoder`` and never registered as a submodule, so the weights
    keep their T5 names (``encoder.*``) plus ``side_fusion.*``.
    """

    def __init__(self, model: "MultimodalT5ForConditionalGeneration"):
        super().__init__()
        object.__setattr__(self, "_model", model)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        retailer_ids=None,
        prices=None,
        **kwargs,
    ) -> BaseModelOutput:
        if retailer_ids is None or prices is None:
            raise ValueError(
                "the multimodal labeler needs retailer_ids and prices; use encode_side_features "
                "(None entries give the UNKNOWN retailer / missing price)"
            )
        kwargs["return_dict"] = True
        model = self._model
        text = model.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)
        return BaseModelOutput(
            last_hidden_state=model.side_fusion(text.last_hidden_state, retailer_ids, prices),
            hidden_states=text.hidden_states,
            attentions=text.attentions,
        )


class MultimodalT5ForConditionalGeneration(T5ForConditionalGeneration):
    """ByT5/T5 seq2seq labeler whose decoder attends to encoder states fused with retailer and price."""

    config_class = MultimodalT5Config
    config: MultimodalT5Config
    # The loss is a per-batch token mean that ignores Trainer's num_items_in_batch; saying so
    # makes Trainer divide by the gradient-accumulation steps itself (plain T5 does not say so).
    accepts_loss_kwargs = False

    def __init__(self, config: MultimodalT5Config):
        super().__init__(config)
        self.side_fusion = SideFeatureFusion(config)
        self.post_init()

    def _init_weights(self, module):
        """T5 init, plus a fusion layer that starts as identity on h0 (keeps the pretrained states)."""
        super()._init_weights(module)
        if isinstance(module, SideFeatureFusion):
            factor = self.config.initializer_factor
            d_model = self.config.d_model
            init.normal_(module.retailer_embedding.weight, mean=0.0, std=factor)
            init.normal_(module.price_projection.weight, mean=0.0, std=factor)
            init.zeros_(module.price_projection.bias)
            init.normal_(module.missing_price, mean=0.0, std=factor)
            weight = torch.empty_like(module.fusion.weight, device="cpu")
            torch.nn.init.normal_(weight, mean=0.0, std=factor * d_model**-0.5)
            weight[:, :d_model] = torch.eye(d_model)
            init.copy_(module.fusion.weight, weight)
            init.zeros_(module.fusion.bias)

    def get_encoder(self, modality: str | None = None):
        if modality is None:
            return _FusingEncoder(self)
        return super().get_encoder(modality)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        retailer_ids: torch.LongTensor | None = None,
        prices: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        encoder_outputs: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ):
        """T5 forward whose encoder states carry the side features.

        ``retailer_ids``/``prices`` are only needed when ``encoder_outputs`` is not given
        (training, or the first step of generate — which then passes the fused states on).
        """
        if encoder_outputs is None:
            encoder_outputs = self.get_encoder()(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                retailer_ids=retailer_ids,
                prices=prices,
                **kwargs,
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        attention_mask = self._encoder_attention_mask(attention_mask, encoder_outputs.last_hidden_state)
        return super().forward(attention_mask=attention_mask, encoder_outputs=encoder_outputs, labels=labels, **kwargs)

    def _encoder_attention_mask(self, attention_mask, encoder_states):
        """The text mask, with one attended position in front when the fused state was prepended."""
        if attention_mask is None or attention_mask.shape[1] == encoder_states.shape[1]:
            return attention_mask
        if self.config.fusion == "prepend" and attention_mask.shape[1] + 1 == encoder_states.shape[1]:
            ones = attention_mask.new_ones((attention_mask.shape[0], 1))
            return torch.cat([ones, attention_mask], dim=1)
        raise ValueError(
            f"attention_mask length {attention_mask.shape[1]} does not match the encoder states "
            f"({encoder_states.shape[1]} positions, fusion={self.config.fusion!r})"
        )

    @classmethod
    def from_text_model(
        cls,
        t5_model_or_path: T5ForConditionalGeneration | str,
        retailers: Sequence[str],
        price_min: float,
        price_max: float,
        side_dim: int = 8,
        fusion: Literal["first", "prepend"] = "first",
        retailer_dropout: float = 0.0,
    ) -> "MultimodalT5ForConditionalGeneration":
        """Start from a plain (Byt)T5 checkpoint: copy every text weight, initialise the side layers.

        ``retailers`` is sorted and de-duplicated (None/NaN dropped) so the id assignment does not
        depend on the order in which the training rows were read; ``price_min``/``price_max``
        should be the min and max of the non-missing training prices.
        """
        text_model = (
            T5ForConditionalGeneration.from_pretrained(t5_model_or_path)
            if isinstance(t5_model_or_path, str)
            else t5_model_or_path
        )
        if isinstance(text_model, cls):
            raise TypeError("from_text_model expects a plain T5 model; this one already has side features")
        settings = text_model.config.to_dict()
        for key in ("model_type", "architectures", "transformers_version"):
            settings.pop(key, None)
        config = MultimodalT5Config(
            **settings,
            retailers=sorted({r for r in retailers if isinstance(r, str)}),
            side_dim=side_dim,
            price_min=price_min,
            price_max=price_max,
            fusion=fusion,
            retailer_dropout=retailer_dropout,
        )
        model = cls(config)
        if text_model.lm_head.weight is not text_model.shared.weight:
            # The T5 v1.1 family (ByT5, Flan-T5) has its own lm_head; transformers 5 builds T5 tied,
            # so untie before loading, or the lm_head's values would overwrite the input embedding.
            model.lm_head.weight = torch.nn.Parameter(text_model.lm_head.weight.detach().clone())
        result = model.load_state_dict(text_model.state_dict(), strict=False)
        missing = [k for k in result.missing_keys if not k.startswith("side_fusion.")]
        if missing or result.unexpected_keys:
            raise RuntimeError(
                f"text weights did not map onto the model: missing={missing}, unexpected={result.unexpected_keys}"
            )
        model.generation_config = copy.deepcopy(text_model.generation_config)
        return model.to(text_model.dtype)


@dataclass
class MultimodalSeq2SeqCollator:
    """DataCollatorForSeq2Seq (labels padded with -100) that also batches retailer_ids and prices.

    Each feature carries ``retailer_ids`` (int) and ``prices`` (float, None or NaN when missing),
    named like the model's forward arguments so Trainer's column filter keeps them.
    """

    tokenizer: Any
    model: Any = None
    padding: Any = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None

    def __post_init__(self):
        self._inner = DataCollatorForSeq2Seq(
            self.tokenizer,
            model=self.model,
            padding=self.padding,
            max_length=self.max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            label_pad_token_id=-100,
            return_tensors="pt",
        )

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        side_keys = ("retailer_ids", "prices")
        for key in side_keys:
            if any(key not in f for f in features):
                raise KeyError(f"every feature needs {key!r} for the multimodal labeler")
        text_features = [{k: v for k, v in f.items() if k not in side_keys} for f in features]
        batch = self._inner(text_features)
        batch["retailer_ids"] = torch.tensor([int(f["retailer_ids"]) for f in features], dtype=torch.long)
        batch["prices"] = torch.tensor(
            [math.nan if f["prices"] is None else float(f["prices"]) for f in features], dtype=torch.float32
        )
        return batch


def load_labeler_model(path: str, **kwargs) -> T5ForConditionalGeneration:
    """Load a labeler checkpoint with the class its config.json names (plain T5 or multimodal)."""
    from prodcat.runtime.checkpoints import reading_model

    with reading_model(path, "a trained labeler (config, safetensors weights)", rule="train_labeler"):
        model_type = T5Config.get_config_dict(path)[0].get("model_type")
        model_class = MultimodalT5ForConditionalGeneration if model_type == MODEL_TYPE else T5ForConditionalGeneration
        return model_class.from_pretrained(path, **kwargs)


class _RequireMultimodalModel(ConversionOps):
    """Weight "conversion" that is the identity for the multimodal class and refuses any other.

    transformers calls it with the model being loaded for checkpoints whose config has
    ``model_type="prodcat_mmt5"`` (``model`` is None when saving, where it is the identity too).
    """

    def convert(self, input_dict, source_patterns=None, target_patterns=None, model=None, **kwargs):
        if model is not None and not isinstance(model, MultimodalT5ForConditionalGeneration):
            raise MultimodalCheckpointError(
                f"this is a prodcat multimodal labeler checkpoint ({MODEL_TYPE}); "
                f"{type(model).__name__} would drop its retailer/price layers. Load it with "
                "prodcat.labelers.mmt5.MultimodalT5ForConditionalGeneration, AutoModelForSeq2SeqLM or "
                "prodcat.labelers.mmt5.load_labeler_model"
            )
        return input_dict

    @property
    def reverse_op(self) -> ConversionOps:
        return self


AutoConfig.register(MODEL_TYPE, MultimodalT5Config, exist_ok=True)
AutoModelForSeq2SeqLM.register(MultimodalT5Config, MultimodalT5ForConditionalGeneration, exist_ok=True)
register_checkpoint_conversion_mapping(
    MODEL_TYPE,
    [WeightConverter("shared.weight", "shared.weight", [_RequireMultimodalModel()])],
    overwrite=True,
)
