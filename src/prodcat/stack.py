"""A learned arbiter over an ensemble's members ("stacking"): per row, it picks one of the valid
paths the members propose, with a small logistic model fit on validation predictions.

Why: the hard vote counts unequal members as equal, so an ensemble of one strong and several weak
labelers votes the strong one down and scores below it. The arbiter learns from validation rows
when to trust whom, with each member's own confidence.

Candidates of a row: the hierarchy-valid paths the members predict, and the hard vote's path
(`vote.vote_predictions`, ties broken by the members' per-level accuracy on the fitting rows);
duplicates count once, in the order vote, then members as given. Invalid paths (possible at the
raw stage) propose nothing; the vote always proposes one, so every row has a candidate.

Features of a (row, candidate) pair, all fitted on the fitting rows only:
* per member: whether it proposed the candidate; if so, each of its confidence columns
  (`SCORE_COLUMNS` present in its table, e.g. log-probability, margin) as the empirical quantile
  of that score among the member's fitting rows (a rank in [0, 1]: comparable across members,
  robust to the long tail of garbage generations), and whether correction changed its row;
* support: the share of members proposing it, the sum of their item accuracies, and the
  accuracy rank of its best proposer; per level, the share of members whose label at that level
  agrees with the candidate's, and the same weighted by each member's accuracy at that level;
* whether it is the vote's choice, and log(1 + its path's training count).

Model: scikit-learn `LogisticRegression` on standardised features, label "the candidate is the
true path"; a row takes its highest-scoring candidate (ties: candidate order). The decision
function is evaluated here from the stored coefficients, so a loaded model gives exactly the
in-memory model's answers. Saved as JSON (no pickle).

Validation numbers are cross-fitted (`cross_fit_stack`): rows go to `folds` folds by a seeded
permutation of their sorted ids, and each fold is scored by a model fit on the other folds only
(features, quantiles, accuracies and scaling included), so no row is scored by a model that saw
it. The model for new rows (the test split, `prodcat predict`) is fit on all validation rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import LEVELS
from .errors import InputError
from .hierarchy import Hierarchy

FORMAT_VERSION = 1
SCORE_COLUMNS = ("logprob", "logprob_per_token", "logprob_min", "margin")
DEFAULT_PARAMS = {"folds": 5, "seed": 0, "C": 1.0}
N_QUANTILES = 101
_MISSING = "\x00missing"  # stands in for a missing label when looking paths up


def _merge_params(params: dict | None) -> dict:
    params = {**DEFAULT_PARAMS, **(params or {})}
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown stack params {unknown}; known: {sorted(DEFAULT_PARAMS)}")
    params = {"folds": int(params["folds"]), "seed": int(params["seed"]), "C": float(params["C"])}
    if params["folds"] < 2 or not params["C"] > 0:
        raise ValueError("stack params need folds >= 2 and C > 0")
    return params


# ---- the members' predictions as arrays ---------------------------------------------------------
class _PathLookup:
    """Hierarchy paths and labels as integer ids."""

    def __init__(self, hierarchy: Hierarchy):
        paths = hierarchy.paths
        self.index = pd.MultiIndex.from_frame(paths[list(LEVELS)])
        self.level_index = [pd.Index(hierarchy.labels(level)) for level in LEVELS]
        self.path_codes = np.column_stack([self.level_index[d].get_indexer(paths[level]) for d, level in enumerate(LEVELS)])
        self.log_count = np.log1p(paths["count"].to_numpy(dtype=np.float64))
        self.labels = paths[list(LEVELS)].to_numpy(dtype=object)

    def path_ids(self, frame: pd.DataFrame) -> np.ndarray:
        """Index of each row's path in the hierarchy; -1 when missing or not a known path."""
        arrays = [frame[level].astype(object).where(frame[level].notna(), _MISSING).astype(str).to_numpy() for level in LEVELS]
        return self.index.get_indexer(pd.MultiIndex.from_arrays(arrays))

    def level_codes(self, frame: pd.DataFrame, depth: int) -> np.ndarray:
        column = frame[LEVELS[depth]]
        return self.level_index[depth].get_indexer(column.astype(object).where(column.notna(), _MISSING).astype(str))


@dataclass
class _Members:
    """The members' predictions for one set of rows, aligned on the first table's ids."""

    ids: np.ndarray  # (rows,)
    paths: np.ndarray  # (rows, members) path ids, -1 = no valid path
    level_codes: list[np.ndarray]  # per level: (rows, members) label codes, -1 = unknown / missing
    scores: dict[str, np.ndarray]  # member → (rows, its score columns), raw values
    corrected: np.ndarray  # (rows, members) bool: correction changed the member's row
    vote: np.ndarray  # (rows,) path id of the hard vote (set by _with_vote)


def _read_members(predictions: list[pd.DataFrame], names: list[str], lookup: _PathLookup,
                  score_columns: dict[str, list[str]]) -> _Members:
    from .vote import _aligned_positions

    if len(predictions) != len(names) or not names:
        raise ValueError(f"{len(predictions)} predictions tables for {len(names)} member names")
    if len(set(names)) != len(names):
        raise ValueError(f"member names must be distinct: {list(names)}")
    ids, positions = _aligned_positions(predictions, names)
    aligned = [frame.iloc[position].reset_index(drop=True) for frame, position in zip(predictions, positions)]
    scores = {}
    for frame, name in zip(aligned, names):
        columns = score_columns[name]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise InputError(name, f"the stack model needs the confidence column(s) {', '.join(missing)}", column=missing[0])
        values = np.column_stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                                  for c in columns]) if columns else np.zeros((len(frame), 0))
        scores[name] = values
    corrected = np.column_stack([_corrected(frame) for frame in aligned])
    return _Members(
        ids=ids,
        paths=np.column_stack([lookup.path_ids(frame) for frame in aligned]),
        level_codes=[np.column_stack([lookup.level_codes(frame, d) for frame in aligned]) for d in range(len(LEVELS))],
        scores=scores,
        corrected=corrected,
        vote=np.full(len(ids), -1, dtype=np.int64),
    )


def _corrected(frame: pd.DataFrame) -> np.ndarray:
    if "corrected" in frame.columns:
        return frame["corrected"].fillna(False).astype(bool).to_numpy()
    if "corrected_levels" in frame.columns:
        return (frame["corrected_levels"].fillna("").astype(str) != "").to_numpy()
    return np.zeros(len(frame), dtype=bool)


def _with_vote(members: _Members, predictions, names, hierarchy, lookup, level_accuracy) -> _Members:
    from .vote import vote_predictions

    voted = vote_predictions(predictions, list(names), hierarchy, level_accuracy=level_accuracy)
    members.vote = lookup.path_ids(voted)  # same row order: the first table's
    return members


# ---- candidates and features --------------------------------------------------------------------
def _candidates(members: _Members) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, slot, path id) of every distinct valid candidate, by row then slot (vote = slot 0)."""
    slots = np.column_stack([members.vote, members.paths])
    keep = slots >= 0
    for s in range(1, slots.shape[1]):
        keep[:, s] &= ~(slots[:, :s] == slots[:, s:s + 1]).any(axis=1)
    row, slot = np.nonzero(keep)
    return row, slot, slots[row, slot]


def _quantiles(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return []
    return np.quantile(finite, np.linspace(0.0, 1.0, N_QUANTILES)).tolist()


def _rank(values: np.ndarray, quantiles: list[float]) -> np.ndarray:
    """Empirical quantile of each value among the fitting rows' (0.5 where unknown)."""
    if not quantiles:
        return np.full(len(values), 0.5)
    ranked = np.interp(values, np.asarray(quantiles), np.linspace(0.0, 1.0, len(quantiles)))
    return np.where(np.isnan(values), 0.5, ranked)


@dataclass
class _Statistics:
    """What the features need from the fitting rows."""

    level_accuracy: dict[str, dict[str, float]]
    item_accuracy: dict[str, float]
    quantiles: dict[str, dict[str, list[float]]]


def _statistics(members: _Members, names, truth_paths: np.ndarray, truth_codes: list[np.ndarray],
                score_columns) -> _Statistics:
    level_accuracy = {name: {level: float(np.mean(members.level_codes[d][:, m] == truth_codes[d]))
                             for d, level in enumerate(LEVELS)} for m, name in enumerate(names)}
    item_accuracy = {name: float(np.mean((members.paths[:, m] == truth_paths) & (truth_paths >= 0)))
                     for m, name in enumerate(names)}
    quantiles = {name: {c: _quantiles(members.scores[name][:, k]) for k, c in enumerate(score_columns[name])}
                 for name in names}
    return _Statistics(level_accuracy, item_accuracy, quantiles)


def feature_names(names: list[str], score_columns: dict[str, list[str]]) -> list[str]:
    out = []
    for name in names:
        out.append(f"{name}.proposed")
        out += [f"{name}.{c}_rank" for c in score_columns[name]]
        out.append(f"{name}.corrected")
    out += ["support_share", "support_accuracy", "best_proposer_rank"]
    out += [f"agree_{level}" for level in LEVELS] + [f"agree_{level}_accuracy" for level in LEVELS]
    out += ["is_vote", "log_path_count"]
    return out


def _features(members: _Members, names, score_columns, stats: _Statistics, lookup: _PathLookup):
    """(row, slot, path, feature matrix) for every candidate."""
    row, slot, path = _candidates(members)
    n_members = len(names)
    proposed = members.paths[row] == path[:, None]  # candidates × members
    columns = []
    for m, name in enumerate(names):
        columns.append(proposed[:, m])
        for k, c in enumerate(score_columns[name]):
            ranks = _rank(members.scores[name][:, k], stats.quantiles[name][c])
            columns.append(proposed[:, m] * ranks[row])
        columns.append(proposed[:, m] & members.corrected[row, m])
    item = np.array([stats.item_accuracy[name] for name in names])
    order = np.argsort(-item, kind="stable")  # rank 0 = the most accurate member
    rank = np.empty(n_members)
    rank[order] = np.arange(n_members)
    best_rank = np.where(proposed, rank[None, :], n_members).min(axis=1)
    columns += [proposed.mean(axis=1), proposed @ item, (n_members - best_rank) / n_members]
    agree_share, agree_accuracy = [], []
    for d, level in enumerate(LEVELS):
        agree = members.level_codes[d][row] == lookup.path_codes[path, d][:, None]
        level_weight = np.array([stats.level_accuracy[name][level] for name in names])
        agree_share.append(agree.mean(axis=1))
        agree_accuracy.append(agree @ level_weight)
    columns += agree_share + agree_accuracy
    columns += [path == members.vote[row], lookup.log_count[path]]
    return row, slot, path, np.column_stack(columns).astype(np.float64)


# ---- the model ----------------------------------------------------------------------------------
@dataclass
class StackModel:
    members: list[str]
    score_columns: dict[str, list[str]]
    statistics: _Statistics
    feature_names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    params: dict
    validation: dict = field(default_factory=dict)  # cross-fitted metrics, when fit by the CLI
    trained_on: np.ndarray | None = field(default=None, repr=False)  # ids of the fitting rows (not saved)

    def decision(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.coef + self.intercept

    def predict(self, predictions: list[pd.DataFrame], names: list[str], hierarchy: Hierarchy) -> pd.DataFrame:
        """One path per row: indoml_id, the four levels (the first table's row order), and
        stack_score (the chosen candidate's decision value), stack_candidates (how many there
        were), stack_proposers (members that proposed the chosen path, comma-joined; "" when
        only the vote did)."""
        predictions, names = self._in_member_order(predictions, names)
        lookup = _PathLookup(hierarchy)
        members = _read_members(predictions, names, lookup, self.score_columns)
        members = _with_vote(members, predictions, names, hierarchy, lookup, self.statistics.level_accuracy)
        row, slot, path, features = _features(members, names, self.score_columns, self.statistics, lookup)
        score = self.decision(features)
        order = np.lexsort((slot, -score, row))
        first = order[np.r_[True, row[order][1:] != row[order][:-1]]]
        chosen = path[first]
        out = pd.DataFrame({"indoml_id": members.ids})
        for d, level in enumerate(LEVELS):
            out[level] = lookup.labels[chosen, d]
        out["stack_score"] = score[first]
        out["stack_candidates"] = np.bincount(row, minlength=len(members.ids))
        proposers = members.paths == chosen[:, None]
        out["stack_proposers"] = [",".join(n for n, p in zip(names, flags) if p) for flags in proposers]
        return out

    def _in_member_order(self, predictions, names):
        if sorted(names) != sorted(self.members):
            raise ValueError(f"the stack model was fit on members {', '.join(self.members)}; got {', '.join(names) or 'none'}")
        by_name = dict(zip(names, predictions))
        return [by_name[n] for n in self.members], list(self.members)

    # ---- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "kind": "prodcat stack (logistic regression over candidate paths)",
            "members": self.members,
            "score_columns": self.score_columns,
            "level_accuracy": self.statistics.level_accuracy,
            "item_accuracy": self.statistics.item_accuracy,
            "score_quantiles": self.statistics.quantiles,
            "features": [{"name": n, "mean": float(mu), "scale": float(s), "coef": float(c)}
                         for n, mu, s, c in zip(self.feature_names, self.mean, self.scale, self.coef)],
            "intercept": float(self.intercept),
            "params": self.params,
            "validation": self.validation,
        }

    def save(self, path) -> None:
        from .io import write_text

        write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", path)

    @classmethod
    def load(cls, path) -> "StackModel":
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(path, f"not a saved stack model: {exc}") from exc
        if not isinstance(obj, dict) or obj.get("format_version") != FORMAT_VERSION:
            raise InputError(path, f"not a stack model of format_version {FORMAT_VERSION}")
        try:
            features = obj["features"]
            model = cls(
                members=list(obj["members"]),
                score_columns={k: list(v) for k, v in obj["score_columns"].items()},
                statistics=_Statistics(obj["level_accuracy"], obj["item_accuracy"], obj["score_quantiles"]),
                feature_names=[f["name"] for f in features],
                mean=np.array([f["mean"] for f in features], dtype=np.float64),
                scale=np.array([f["scale"] for f in features], dtype=np.float64),
                coef=np.array([f["coef"] for f in features], dtype=np.float64),
                intercept=float(obj["intercept"]),
                params=dict(obj["params"]),
                validation=dict(obj.get("validation") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"malformed stack model: {exc!r}") from exc
        expected = feature_names(model.members, model.score_columns)
        if model.feature_names != expected:
            raise InputError(path, f"features {model.feature_names} do not match the members' {expected}")
        return model


def _score_columns(predictions, names) -> dict[str, list[str]]:
    return {name: [c for c in SCORE_COLUMNS if c in frame.columns] for frame, name in zip(predictions, names)}


def _truth_arrays(truth: pd.DataFrame, ids: np.ndarray, lookup: _PathLookup, source="truth"):
    missing = [c for c in ("indoml_id", *LEVELS) if c not in truth.columns]
    if missing:
        raise InputError(source, f"expected labelled rows: missing {', '.join(missing)}", column=missing[0])
    position = pd.Index(truth["indoml_id"].to_numpy(dtype=np.int64)).get_indexer(ids)
    if (position < 0).any():
        raise InputError(source, f"no labels for indoml_id {ids[np.argmax(position < 0)]}", column="indoml_id")
    rows = truth.iloc[position].reset_index(drop=True)
    return lookup.path_ids(rows), [lookup.level_codes(rows, d) for d in range(len(LEVELS))]


def fit_stack(predictions: list[pd.DataFrame], names: list[str], truth: pd.DataFrame, hierarchy: Hierarchy,
              params: dict | None = None, *, truth_source="truth") -> StackModel:
    """Fit the arbiter on labelled rows (validation): the members' predictions of them and the truth."""
    from sklearn.linear_model import LogisticRegression

    params = _merge_params(params)
    names = list(names)
    lookup = _PathLookup(hierarchy)
    score_columns = _score_columns(predictions, names)
    members = _read_members(predictions, names, lookup, score_columns)
    truth_paths, truth_codes = _truth_arrays(truth, members.ids, lookup, truth_source)
    stats = _statistics(members, names, truth_paths, truth_codes, score_columns)
    members = _with_vote(members, predictions, names, hierarchy, lookup, stats.level_accuracy)
    row, _, path, features = _features(members, names, score_columns, stats, lookup)
    target = path == truth_paths[row]
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    if target.all() or not target.any():
        # one class only: no evidence to rank by; candidate order (the vote first) decides
        coef, intercept = np.zeros(features.shape[1]), 0.0
    else:
        model = LogisticRegression(C=params["C"], max_iter=5000, solver="lbfgs")
        model.fit((features - mean) / scale, target)
        coef, intercept = model.coef_[0].astype(np.float64), float(model.intercept_[0])
    return StackModel(names, score_columns, stats, feature_names(names, score_columns), mean, scale, coef, intercept,
                      params, trained_on=members.ids.copy())


def fold_of_rows(ids: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's fold: a seeded permutation of the rows in sorted-id order, so the input order
    does not matter; fold sizes differ by at most one."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < folds:
        raise ValueError(f"cross-fitting {folds} folds needs at least {folds} rows, got {len(ids)}")
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))
    return np.random.default_rng(seed).permutation(len(ids))[rank] % folds


def cross_fit_stack(predictions: list[pd.DataFrame], names: list[str], truth: pd.DataFrame, hierarchy: Hierarchy,
                    params: dict | None = None, *, truth_source="truth"):
    """Out-of-fold predictions for every row: (table in the first table's row order, each row's
    fold, the fold models). Fold f's rows are scored by a model fit on the other folds only."""
    params = _merge_params(params)
    ids = predictions[0]["indoml_id"].to_numpy(dtype=np.int64)
    fold = fold_of_rows(ids, params["folds"], params["seed"])
    id_fold = dict(zip(ids.tolist(), fold.tolist()))
    parts, models = [], []
    for f in range(params["folds"]):
        subsets = [frame[frame["indoml_id"].map(id_fold) != f] for frame in predictions]
        held_out = [frame[frame["indoml_id"].map(id_fold) == f] for frame in predictions]
        model = fit_stack(subsets, names, truth, hierarchy, params, truth_source=truth_source)
        models.append(model)
        parts.append(model.predict(held_out, names, hierarchy))
    out = pd.concat(parts, ignore_index=True)
    out = out.set_index("indoml_id").loc[ids].reset_index()
    return out, fold, models
