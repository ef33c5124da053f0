"""One interface for every labeler kind: train, save, load, predict (and score given paths).

`labeler_for(kind)` is the one place that maps a configured kind to its implementation:

- "text" and "multimodal": a fine-tuned seq2seq model (ByT5, Flan-T5; the multimodal ByT5 also
  reads retailer and price), prodcat.labelers.seq2seq;
- "charngram": character n-gram path naive Bayes, prodcat.labelers.charngram.

Every one is configured by its entry under `labelers:` in config.yaml (kind, source, train /
predict settings or params), trains from labelled rows into a model folder that holds a
`TrainingSummary` (train_summary.json), and predicts a predictions table with one
`PredictionSummary`. The rules' scripts (prodcat.workflow), `prodcat predict` (prodcat.predict)
and Table 2 go through this interface only.

Rows handed to a labeler carry its source column: the description, or the inferred product name
(`with_source` joins it).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import pandas as pd

from prodcat.labelers.summaries import TRAIN_SUMMARY, PredictionSummary, TrainingSummary

RAW, CONSTRAINED = "raw", "constrained"
DECODINGS = (RAW, CONSTRAINED)


class Labeler(ABC):
    """A trained labeler of one kind, with its config entry and model folder."""

    kind: ClassVar[str]
    lists_alternatives: ClassVar[bool] = False  # whether `alternatives` is implemented

    def __init__(self, cfg: dict, model_dir, training_summary: TrainingSummary | None = None):
        self.cfg = cfg
        self.model_dir = Path(model_dir)
        self.training_summary = training_summary

    @classmethod
    def source_of(cls, cfg: dict) -> str:
        """The row column this labeler reads as its text (description or name)."""
        return cfg["source"]

    @property
    def source(self) -> str:
        return self.source_of(self.cfg)

    @classmethod
    @abstractmethod
    def train(
        cls,
        cfg: dict,
        train_rows: pd.DataFrame,
        val_rows: pd.DataFrame,
        out_dir,
        *,
        base_dir=None,
        hierarchy=None,
        checkpoint_dir=None,
        profile: dict | None = None,
    ) -> Labeler:
        """Train on labelled rows (val_rows: early stopping or model selection) and save into
        out_dir with the TrainingSummary. base_dir: the pretrained model a neural labeler starts
        from; hierarchy: the label tree (charngram's classes); checkpoint_dir: resumable
        checkpoints, outside out_dir; profile: prodcat.runtime.profiling settings."""

    @classmethod
    @abstractmethod
    def load(cls, model_dir, cfg: dict) -> Labeler:
        """The labeler saved in model_dir (by train or save)."""

    @abstractmethod
    def save(self, out_dir) -> None:
        """The model and its TrainingSummary into out_dir, loadable with load."""

    @abstractmethod
    def predict(
        self, rows: pd.DataFrame, *, decoding: str = RAW, hierarchy=None, count_flops: bool = False
    ) -> tuple[pd.DataFrame, PredictionSummary]:
        """The predictions table (indoml_id, the four levels, text, parse_ok and confidence
        columns) and its summary. decoding: raw (free) or constrained (only paths of `hierarchy`);
        count_flops: also count the FLOPs of one batch (slow; Table 2 reads the test split's)."""

    @abstractmethod
    def score_paths(self, rows: pd.DataFrame, paths: pd.DataFrame) -> pd.DataFrame:
        """`paths` (indoml_id and the four levels, any number per id) with `logprob` added: this
        labeler's log-probability of each path for its row."""

    def alternatives(self, rows: pd.DataFrame, k: int) -> pd.DataFrame:
        """This labeler's k best paths per row, best first: indoml_id, rank (1 = its prediction),
        the four levels and logprob. Only labelers that score every path of the hierarchy can list
        them cheaply (`lists_alternatives`); a seq2seq labeler would need a k-beam search."""
        raise NotImplementedError(f"a {self.kind} labeler does not list ranked alternatives")


def _check_decoding(decoding: str) -> None:
    if decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}: expected one of {', '.join(DECODINGS)}")


class Seq2SeqLabeler(Labeler):
    """A fine-tuned seq2seq model that writes "supergroup | group | module | brand" (prodcat.labelers.seq2seq).
    Training settings: cfg["train"] (Hugging Face TrainingArguments names) plus, for the multimodal
    kind, side_dim, fusion and retailer_dropout; prediction settings: cfg["predict"]."""

    kind = "text"
    SIDE_SETTINGS = ("side_dim", "fusion", "retailer_dropout")

    def __init__(self, cfg, model_dir, training_summary=None, loaded=None):
        super().__init__(cfg, model_dir, training_summary)
        self._loaded = loaded

    @property
    def loaded(self):
        """(model, tokenizer), loaded once on first use."""
        if self._loaded is None:
            from prodcat.labelers.seq2seq import load_trained_model

            self._loaded = load_trained_model(self.model_dir)
        return self._loaded

    @classmethod
    def train(
        cls, cfg, train_rows, val_rows, out_dir, *, base_dir=None, hierarchy=None, checkpoint_dir=None, profile=None
    ):
        from prodcat.labelers.seq2seq import train_seq2seq

        if base_dir is None or checkpoint_dir is None:
            raise ValueError(f"a {cfg['kind']} labeler trains from a base model (base_dir) with a checkpoint_dir")
        params = {**cfg["train"], **{k: cfg[k] for k in cls.SIDE_SETTINGS if k in cfg}}
        summary = train_seq2seq(
            base_dir,
            train_rows,
            val_rows,
            out_dir,
            checkpoint_dir,
            params,
            source_column=cls.source_of(cfg),
            kind=cfg["kind"],
            profile=profile,
        )
        return cls(cfg, out_dir, summary)

    @classmethod
    def load(cls, model_dir, cfg):
        return cls(cfg, model_dir, TrainingSummary.read(model_dir))

    def save(self, out_dir) -> None:
        """A copy of the model folder: the weights as trained (a loaded model may be cast to bf16
        for the GPU), tokenizer, profile and summary."""
        import shutil

        out_dir = Path(out_dir)
        if out_dir.resolve() != self.model_dir.resolve():
            shutil.copytree(self.model_dir, out_dir, dirs_exist_ok=True)
        if self.training_summary is not None:
            self.training_summary.write(out_dir)

    def predict(self, rows, *, decoding=RAW, hierarchy=None, count_flops=False):
        from prodcat.labelers.seq2seq import predict_seq2seq

        _check_decoding(decoding)
        return predict_seq2seq(
            self.model_dir,
            rows,
            self.cfg["predict"],
            source_column=self.source,
            hierarchy=hierarchy,
            constrained=decoding == CONSTRAINED,
            loaded=self.loaded,
            count_batch_flops=count_flops,
        )

    def score_paths(self, rows, paths):
        from prodcat.labelers.seq2seq import score_seq2seq_paths

        return score_seq2seq_paths(
            self.model_dir, rows, paths, self.cfg["predict"], source_column=self.source, loaded=self.loaded
        )


class MultimodalLabeler(Seq2SeqLabeler):
    """The multimodal ByT5 (prodcat.labelers.mmt5): retailer and price fused into the encoder."""

    kind = "multimodal"


class PathNaiveBayesLabeler(Labeler):
    """Character n-gram path naive Bayes (prodcat.labelers.charngram): cfg["params"]. It reads the
    description, retailer and price, and every prediction is a path of the hierarchy, so its
    constrained decoding is its raw one."""

    kind = "charngram"
    lists_alternatives = True

    def __init__(self, cfg, model_dir, training_summary=None, model=None):
        super().__init__(cfg, model_dir, training_summary)
        self.model = model

    @classmethod
    def source_of(cls, cfg):
        return "description"

    @classmethod
    def train(
        cls, cfg, train_rows, val_rows, out_dir, *, base_dir=None, hierarchy=None, checkpoint_dir=None, profile=None
    ):
        from prodcat.labelers.charngram import train_charngram
        from prodcat.runtime.device import describe_device

        if hierarchy is None:
            raise ValueError("a charngram labeler trains over the hierarchy's paths: pass hierarchy")
        started = time.time()
        model = train_charngram(train_rows, hierarchy, params=dict(cfg["params"]), val_rows=val_rows)
        # no torch training step: no FLOPs, no profile (Table 2 says n/a)
        summary = TrainingSummary(
            kind=cls.kind,
            device=describe_device(),
            parameters=model.n_parameters,
            trainer_seconds=time.time() - started,
            train_gflops_per_step=None,
            details={"val_metrics": model.metrics},
        )
        labeler = cls(cfg, out_dir, summary, model)
        labeler.save(out_dir)
        return labeler

    @classmethod
    def load(cls, model_dir, cfg):
        from prodcat.labelers.charngram import CharNgramLabeler

        return cls(cfg, model_dir, TrainingSummary.read(model_dir), CharNgramLabeler.load(model_dir))

    def save(self, out_dir) -> None:
        self.model.save(out_dir)
        if self.training_summary is not None:
            self.training_summary.write(out_dir)

    def predict(self, rows, *, decoding=RAW, hierarchy=None, count_flops=False):
        from prodcat.runtime.device import describe_device

        _check_decoding(decoding)
        started = time.time()
        table = self.model.predict(rows)
        summary = PredictionSummary(
            kind=self.kind,
            decoding=decoding,
            rows=len(table),
            parse_failures=0,
            predict_seconds=time.time() - started,
            batch_size=self.model.params["predict_batch_rows"],
            device=describe_device(),
            predict_gflops_per_batch=None,
            details={"parameters": self.model.n_parameters},
        )
        return table, summary

    def score_paths(self, rows, paths):
        return self.model.score_paths(rows, paths)

    def alternatives(self, rows, k):
        return self.model.alternatives(rows, k)


LABELERS: dict[str, type[Labeler]] = {
    cls.kind: cls for cls in (Seq2SeqLabeler, MultimodalLabeler, PathNaiveBayesLabeler)
}


def labeler_for(kind: str) -> type[Labeler]:
    """The Labeler class of a configured kind."""
    try:
        return LABELERS[kind]
    except KeyError:
        raise ValueError(f"unknown labeler kind {kind!r}: expected one of {', '.join(LABELERS)}") from None


def train_configured_labeler(cfg: dict, train_rows, val_rows, out_dir, **kwargs) -> Labeler:
    """Train the labeler that `cfg` (an entry of config labelers) describes; see Labeler.train."""
    return labeler_for(cfg["kind"]).train(cfg, train_rows, val_rows, out_dir, **kwargs)


def load_labeler(model_dir, cfg: dict) -> Labeler:
    """The labeler that `cfg` describes, saved in model_dir."""
    model_dir = Path(model_dir)
    if not (model_dir / TRAIN_SUMMARY).is_file():
        from prodcat.runtime.errors import InputError

        raise InputError(model_dir, f"not a trained labeler: no {TRAIN_SUMMARY}")
    return labeler_for(cfg["kind"]).load(model_dir, cfg)


def with_source(rows: pd.DataFrame, source: str, names_path=None) -> pd.DataFrame:
    """Rows with the labeler's input text: the description itself, or an inferred name (from the
    names table at names_path) joined on indoml_id (every row must have one)."""
    if source == "description":
        return rows
    from prodcat.data.io import read_table

    return with_names(rows, read_table(names_path), names_path)


def with_names(rows: pd.DataFrame, names: pd.DataFrame, source="names") -> pd.DataFrame:
    """Rows with a `name` column from `names` (indoml_id, name), one per row."""
    from prodcat.runtime.errors import InputError

    merged = rows.merge(names[["indoml_id", "name"]], on="indoml_id", how="left", validate="one_to_one")
    missing = merged["name"].isna()
    if missing.any():
        raise InputError(source, f"no name for indoml_id {merged.loc[missing, 'indoml_id'].iloc[0]}", column="name")
    return merged
