"""A learned arbiter over an ensemble's members ("stacking"): per row, it picks one of the valid
paths the members propose, with a small logistic model fit on validation predictions.

Why: the hard vote counts unequal members as equal, so an ensemble of one strong and several weak
labelers votes the strong one down and scores below it. The arbiter learns from validation rows
when to trust whom, with each member's own confidence.

Candidates of a row: the distinct hierarchy-valid paths the members predict (in member order), then
those of the members' ranked alternatives (`alternatives`: a member that scores every path, such as
charngram, lists its k best; its runner-up is often right when its first choice is not, and the
other members' scores of it can tell). A row with no valid candidate (possible only for raw
output) takes the hard vote's path (`vote.vote_predictions`), which always exists.

Features of a (row, candidate) pair, all fitted on the fitting rows only:
* per member: whether it proposed the candidate; if so, each of its confidence columns
  (`SCORE_COLUMNS` present in its table, e.g. log-probability, margin) as the empirical quantile
  of that score among the member's fitting rows (a rank in [0, 1]: comparable across members,
  robust to the long tail of garbage generations), and whether correction changed its row;
* per member with candidate scores (`candidate_scores`: its log-probability of every candidate,
  `seq2seq.score_paths` / `CharNgramLabeler.score_paths`): that log-probability (and per token),
  its gap to the member's favourite candidate of the row, and whether it is that favourite, so a
  member also speaks about the paths it did not write;
* per member with ranked alternatives: 1 / the candidate's rank in its list (0 when not listed);
* support: the share of members proposing it, the sum of their item accuracies, and the accuracy
  rank of its best proposer; per level, the share of members whose label at that level agrees with
  the candidate's, and the same weighted by each member's accuracy at that level;
* whether it is the hard vote's choice, log(1 + its path's training count) and, when the rows'
  descriptions are given, how well the candidate's brand and module match the description
  (rapidfuzz partial and token-set ratios) and whether a word of it abbreviates the brand
  (`abbreviation_score`: receipts write "nvsh" for nevish).

Model: a linear ranker, scikit-learn `LogisticRegression` fit pairwise on standardised features
(the true candidate of a row against each other candidate of that row); a row takes its
highest-scoring candidate (ties: candidate order). The inverse regularisation C is chosen from `C`
(a grid) by an inner cross-validation on the fitting rows, against the plain choice of deferring to
the best member; when no C beats that, the model defers to the best member (all weight on "the
best member proposed it"): an arbiter that cannot tell better keeps the best member's answer. The decision function is
evaluated here from the stored coefficients, so a loaded model gives exactly the in-memory
model's answers. Saved as JSON (no pickle).

Validation numbers are cross-fitted (`cross_fit_stack`): rows go to `folds` folds by a seeded
permutation of their sorted ids, and each fold is scored by a model fit on the other folds only
(features, quantiles, accuracies, scaling and the choice of C included), so no row is scored by a
model that saw it. The model for new rows (the test split, `prodcat predict`) is fit on all
validation rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy
from prodcat.runtime.errors import InputError
from prodcat.runtime.params import merge_params

FORMAT_VERSION = 2  # 2: ranked alternatives as candidates
SCORE_COLUMNS = ("logprob", "logprob_per_token", "logprob_min", "margin")
DEFAULT_PARAMS = {"folds": 5, "seed": 0, "C": [0.03, 0.1, 0.3, 1.0], "inner_folds": 3}
N_QUANTILES = 101
LOGPROB_FLOOR, GAP_FLOOR, PER_TOKEN_FLOOR = -200.0, -30.0, -20.0  # clip the long tails of candidate scores
_MISSING = "\x00missing"  # stands in for a missing label when looking paths up


def resolve_params(params: dict | None) -> dict:
    params = merge_params(DEFAULT_PARAMS, params, "stack params")
    grid = params["C"] if isinstance(params["C"], (list, tuple)) else [params["C"]]
    params = {
        "folds": int(params["folds"]),
        "seed": int(params["seed"]),
        "C": [float(c) for c in grid],
        "inner_folds": int(params["inner_folds"]),
    }
    if params["folds"] < 2 or params["inner_folds"] < 2 or not params["C"] or min(params["C"]) <= 0:
        raise ValueError("stack params need folds >= 2, inner_folds >= 2 and every C > 0")
    return params


# ---- the members' predictions as arrays ---------------------------------------------------------
class _PathLookup:
    """Hierarchy paths and labels as integer ids."""

    def __init__(self, hierarchy: Hierarchy):
        paths = hierarchy.paths
        self.index = pd.MultiIndex.from_frame(paths[list(LEVELS)])
        self.level_index = [pd.Index(hierarchy.labels(level)) for level in LEVELS]
        self.path_codes = np.column_stack(
            [self.level_index[d].get_indexer(paths[level]) for d, level in enumerate(LEVELS)]
        )
        self.log_count = np.log1p(paths["count"].to_numpy(dtype=np.float64))
        self.labels = paths[list(LEVELS)].to_numpy(dtype=object)

    def path_ids(self, frame: pd.DataFrame) -> np.ndarray:
        """Index of each row's path in the hierarchy; -1 when missing or not a known path."""
        arrays = [
            frame[level].astype(object).where(frame[level].notna(), _MISSING).astype(str).to_numpy() for level in LEVELS
        ]
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
    candidate_scores: dict[str, pd.DataFrame] = field(default_factory=dict)  # member → (id, path) → scores
    descriptions: np.ndarray | None = None  # (rows,) lower-cased, when given
    alternatives: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # member → (rows, k) path ids of its k best, -1 = none


def _read_members(
    predictions: list[pd.DataFrame], names: list[str], lookup: _PathLookup, score_columns: dict[str, list[str]]
) -> _Members:
    from prodcat.ensemble.vote import _aligned_positions

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
            raise InputError(
                name, f"the stack model needs the confidence column(s) {', '.join(missing)}", column=missing[0]
            )
        scores[name] = np.column_stack([_numeric(frame[c]) for c in columns]) if columns else np.zeros((len(frame), 0))
    return _Members(
        ids=ids,
        paths=np.column_stack([lookup.path_ids(frame) for frame in aligned]),
        level_codes=[np.column_stack([lookup.level_codes(frame, d) for frame in aligned]) for d in range(len(LEVELS))],
        scores=scores,
        corrected=np.column_stack([_corrected(frame) for frame in aligned]),
        vote=np.full(len(ids), -1, dtype=np.int64),
    )


def _numeric(column: pd.Series) -> np.ndarray:
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _corrected(frame: pd.DataFrame) -> np.ndarray:
    if "corrected" in frame.columns:
        return frame["corrected"].fillna(False).astype(bool).to_numpy()
    if "corrected_levels" in frame.columns:
        return (frame["corrected_levels"].fillna("").astype(str) != "").to_numpy()
    return np.zeros(len(frame), dtype=bool)


def _with_context(
    members: _Members,
    predictions,
    names,
    hierarchy,
    lookup,
    level_accuracy,
    candidate_scores,
    rows,
    alternatives=None,
    alternative_counts=None,
) -> _Members:
    """Adds the hard vote's path, the members' candidate scores, the descriptions and the
    members' ranked alternatives (the first `alternative_counts[name]` of each)."""
    from prodcat.ensemble.vote import vote_predictions

    voted = vote_predictions(predictions, list(names), hierarchy, level_accuracy=level_accuracy)
    members.vote = lookup.path_ids(voted)  # same row order: the first table's
    for name, table in (candidate_scores or {}).items():
        missing = [c for c in ("indoml_id", *LEVELS, "logprob") if c not in table.columns]
        if missing:
            raise InputError(name, f"candidate scores lack column(s) {', '.join(missing)}", column=missing[0])
        keyed = table.assign(path=lookup.path_ids(table))
        keyed = keyed[keyed["path"] >= 0].drop_duplicates(["indoml_id", "path"])
        members.candidate_scores[name] = keyed.set_index(["indoml_id", "path"])
    if rows is not None:
        position = pd.Index(rows["indoml_id"].to_numpy(dtype=np.int64)).get_indexer(members.ids)
        if (position < 0).any():
            raise InputError(
                "rows", f"no description for indoml_id {members.ids[np.argmax(position < 0)]}", column="indoml_id"
            )
        members.descriptions = rows["description"].astype(str).str.lower().to_numpy(dtype=object)[position]
    for name, k in (alternative_counts or {}).items():
        table = (alternatives or {}).get(name)
        if table is None:
            raise InputError(name, "the stack model needs this member's ranked alternatives")
        members.alternatives[name] = _alternative_paths(table, members.ids, k, lookup, name)
    return members


def _alternative_paths(table: pd.DataFrame, ids: np.ndarray, k: int, lookup: _PathLookup, source) -> np.ndarray:
    """(rows, k) path ids of a member's ranked alternatives (indoml_id, rank 1.., the four levels);
    -1 where a row has fewer, or a path is not in the hierarchy."""
    missing = [c for c in ("indoml_id", "rank", *LEVELS) if c not in table.columns]
    if missing:
        raise InputError(source, f"ranked alternatives lack column(s) {', '.join(missing)}", column=missing[0])
    table_ids, rank = _ranked_ids(table, source)
    out = np.full((len(ids), k), -1, dtype=np.int64)
    keep = rank <= k
    position = pd.Index(ids).get_indexer(table_ids[keep])
    found = position >= 0
    out[position[found], rank[keep][found].astype(np.int64) - 1] = lookup.path_ids(table[keep])[found]
    return out


def _ranked_ids(table: pd.DataFrame, source) -> tuple[np.ndarray, np.ndarray]:
    """(ids, ranks) of a ranked-alternatives table, checked: integer ids, and each id's ranks
    exactly 1, 2, ..., n (so k, the largest rank, is bounded by the table's length)."""
    ids = pd.to_numeric(table["indoml_id"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    rank = pd.to_numeric(table["rank"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    for values, column in ((ids, "indoml_id"), (rank, "rank")):
        bad = ~(np.isfinite(values) & (values == np.round(values)))
        if bad.any():
            at = int(np.argmax(bad))
            raise InputError(
                source,
                f"ranked alternatives need integer values, got {table[column].tolist()[at]!r}",
                column=column,
                row=at + 1,
            )
    order = np.lexsort((rank, ids))
    start = np.r_[True, ids[order][1:] != ids[order][:-1]]
    expected = np.arange(len(order)) - np.maximum.accumulate(np.where(start, np.arange(len(order)), 0)) + 1
    wrong = rank[order] != expected
    if wrong.any():
        at = int(order[np.argmax(wrong)])
        raise InputError(
            source,
            f"indoml_id {int(ids[at])}: ranks must be 1, 2, ... without gaps or repeats",
            column="rank",
            row=at + 1,
        )
    return ids.astype(np.int64), rank.astype(np.int64)


# ---- candidates and features --------------------------------------------------------------------
def _candidates(members: _Members, alternatives: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, slot, path id) of every distinct valid candidate, by row then slot (slot k+1 = member
    k's prediction; then the ranked alternatives of the members named, in that order); a row with
    none gets the vote's path in slot 0."""
    slots = np.column_stack([members.vote, members.paths, *[members.alternatives[n] for n in alternatives]])
    keep = slots >= 0
    keep[:, 0] &= ~(slots[:, 1:] >= 0).any(axis=1)  # the vote only as the fallback
    for s in range(2, slots.shape[1]):
        keep[:, s] &= ~(slots[:, 1:s] == slots[:, s : s + 1]).any(axis=1)
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


def _statistics(
    members: _Members, names, truth_paths: np.ndarray, truth_codes: list[np.ndarray], score_columns
) -> _Statistics:
    level_accuracy = {
        name: {level: float(np.mean(members.level_codes[d][:, m] == truth_codes[d])) for d, level in enumerate(LEVELS)}
        for m, name in enumerate(names)
    }
    item_accuracy = {
        name: float(np.mean((members.paths[:, m] == truth_paths) & (truth_paths >= 0))) for m, name in enumerate(names)
    }
    quantiles = {
        name: {c: _quantiles(members.scores[name][:, k]) for k, c in enumerate(score_columns[name])} for name in names
    }
    return _Statistics(level_accuracy, item_accuracy, quantiles)


@dataclass(frozen=True)
class Layout:
    """Which inputs the features are built from (fixed when the model is fit)."""

    members: tuple[str, ...]
    score_columns: dict  # member → its confidence columns
    candidate_columns: dict  # member → its candidate-score columns (absent: no candidate scores)
    descriptions: bool
    alternatives: dict = field(default_factory=dict)  # member → how many of its ranked alternatives are candidates

    def feature_names(self) -> list[str]:
        out = []
        for name in self.members:
            out.append(f"{name}.proposed")
            out += [f"{name}.{c}_rank" for c in self.score_columns[name]]
            out.append(f"{name}.corrected")
            for c in self.candidate_columns.get(name, []):
                out.append(f"{name}.candidate_{c}")
                if c == "logprob":
                    out += [f"{name}.candidate_gap", f"{name}.candidate_is_favourite"]
            if name in self.alternatives:
                out.append(f"{name}.alternative_reciprocal_rank")
        out += ["support_share", "support_accuracy", "best_proposer_rank"]
        out += [f"agree_{level}" for level in LEVELS] + [f"agree_{level}_accuracy" for level in LEVELS]
        out += ["is_vote", "log_path_count"]
        if self.descriptions:
            out += [
                "brand_partial_ratio",
                "brand_token_set_ratio",
                "module_partial_ratio",
                "module_token_set_ratio",
                "brand_abbreviation",
            ]
        return out


def _features(members: _Members, layout: Layout, stats: _Statistics, lookup: _PathLookup):
    """(row, slot, path, feature matrix) for every candidate."""
    names = list(layout.members)
    row, slot, path = _candidates(members, tuple(n for n in names if n in layout.alternatives))
    n_members = len(names)
    proposed = members.paths[row] == path[:, None]  # candidates × members
    columns = []
    for m, name in enumerate(names):
        columns.append(proposed[:, m])
        for k, c in enumerate(layout.score_columns[name]):
            ranks = _rank(members.scores[name][:, k], stats.quantiles[name][c])
            columns.append(proposed[:, m] * ranks[row])
        columns.append(proposed[:, m] & members.corrected[row, m])
        if name in layout.candidate_columns:
            columns += _candidate_features(members, name, layout.candidate_columns[name], row, path, lookup)
        if name in layout.alternatives:
            ranked = members.alternatives[name][row] == path[:, None]  # candidates × k
            columns.append(np.where(ranked.any(axis=1), 1.0 / (ranked.argmax(axis=1) + 1), 0.0))
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
    if layout.descriptions:
        columns += _description_features(members.descriptions, row, path, lookup)
    return row, slot, path, np.column_stack(columns).astype(np.float64)


def _candidate_features(members: _Members, name: str, columns: list[str], row, path, lookup) -> list[np.ndarray]:
    """A member's score of every candidate: its log-probability (and per token), the gap to its
    favourite candidate of the row, and whether it is that favourite."""
    table = members.candidate_scores.get(name)
    if table is None:
        raise InputError(name, "the stack model needs this member's candidate scores")
    wanted = pd.MultiIndex.from_arrays([members.ids[row], path])
    found = table.index.get_indexer(wanted)
    if (found < 0).any():
        i = int(np.argmax(found < 0))
        raise InputError(
            name, f"candidate scores lack the path {tuple(lookup.labels[path[i]])} for indoml_id {members.ids[row[i]]}"
        )
    out = []
    for c in columns:
        values = np.nan_to_num(table[c].to_numpy(dtype=np.float64)[found], nan=-np.inf)
        if c == "logprob":
            values = np.maximum(values, LOGPROB_FLOOR)
            best = pd.Series(values).groupby(row).transform("max").to_numpy()
            out += [values, np.maximum(values - best, GAP_FLOOR), (values == best).astype(np.float64)]
        else:
            out.append(np.maximum(values, PER_TOKEN_FLOOR))
    return out


def _description_features(descriptions, row, path, lookup: _PathLookup) -> list[np.ndarray]:
    from rapidfuzz import fuzz

    out = []
    for depth in (3, 2):  # brand, module
        pairs = list(zip(descriptions[row], lookup.labels[path, depth]))
        out.append(np.array([fuzz.partial_ratio(a, b) for a, b in pairs], dtype=np.float64) / 100)
        out.append(np.array([fuzz.token_set_ratio(a, b) for a, b in pairs], dtype=np.float64) / 100)
    out.append(np.array([abbreviation_score(a, b) for a, b in zip(descriptions[row], lookup.labels[path, 3])]))
    return out


def _is_subsequence(short: str, long: str) -> bool:
    letters = iter(long)
    return all(c in letters for c in short)


def abbreviation_score(description: str, label: str) -> float:
    """How well a word of the description abbreviates the label, as receipts shorten brands
    ("nvsh" for nevish, "crspdy" for crispday, "uncl hrbys" for uncle harbys): the longest run of
    consecutive words (each of two letters or more) that starts with the label's first letter and
    whose letters appear in the label in order, as a share of the label's letters (0 if none)."""
    target = "".join(c for c in str(label).lower() if c.isalnum())
    if not target:
        return 0.0
    words = [w for w in "".join(c if c.isalnum() else " " for c in str(description).lower()).split()]
    best = 0
    for start, word in enumerate(words):
        if len(word) < 2 or word[0] != target[0] or word.isdigit():
            continue
        run = ""
        for following in words[start:]:
            if not _is_subsequence(run + following, target):
                break
            run += following
        best = max(best, len(run))
    return min(best / len(target), 1.0)


# ---- the model ----------------------------------------------------------------------------------
@dataclass
class StackModel:
    layout: Layout
    statistics: _Statistics
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    params: dict
    selection: dict = field(default_factory=dict)  # how C (or deferring to the best member) was chosen
    validation: dict = field(default_factory=dict)  # cross-fitted metrics, when fit by the CLI
    trained_on: np.ndarray | None = field(default=None, repr=False)  # ids of the fitting rows (not saved)
    # temperature of the candidates' softmax + isotonic map of the chosen one's probability to a
    # confidence (prodcat.ensemble.calibration), fit on the cross-fitted validation rows; None: not calibrated
    calibration: dict | None = None

    @property
    def members(self) -> list[str]:
        return list(self.layout.members)

    @property
    def feature_names(self) -> list[str]:
        return self.layout.feature_names()

    def decision(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.coef + self.intercept

    def predict(
        self,
        predictions: list[pd.DataFrame],
        names: list[str],
        hierarchy: Hierarchy,
        candidate_scores: dict[str, pd.DataFrame] | None = None,
        rows: pd.DataFrame | None = None,
        alternatives: dict[str, pd.DataFrame] | None = None,
    ) -> pd.DataFrame:
        """One path per row: indoml_id, the four levels (the first table's row order), and
        stack_score (the chosen candidate's decision value), stack_candidates (how many there
        were), stack_proposers (members that proposed the chosen path, comma-joined),
        stack_probability (its softmax probability among the row's candidates at the fitted
        temperature) and, when the model is calibrated, `confidence` (prodcat.ensemble.calibration).
        candidate_scores, rows (descriptions) and alternatives as the model was fit with."""
        ranked = self.rank_candidates(
            predictions, names, hierarchy, candidate_scores=candidate_scores, rows=rows, alternatives=alternatives
        )
        return self.chosen(ranked)

    def chosen(self, ranked: pd.DataFrame) -> pd.DataFrame:
        """Each row's first candidate of a `rank_candidates` table, with its confidence."""
        out = ranked[ranked["rank"] == 1].drop(columns=["rank", "proposers"]).reset_index(drop=True)
        if self.calibration is not None:
            from prodcat.ensemble.calibration import with_confidence

            out = with_confidence(out, self.calibration, "the stack's predictions")
        return out

    def rank_candidates(
        self,
        predictions: list[pd.DataFrame],
        names: list[str],
        hierarchy: Hierarchy,
        candidate_scores: dict[str, pd.DataFrame] | None = None,
        rows: pd.DataFrame | None = None,
        alternatives: dict[str, pd.DataFrame] | None = None,
    ) -> pd.DataFrame:
        """Every candidate of every row, rows in the first table's order and each row's candidates
        best first: indoml_id, rank (1 = the row's answer), the four levels, stack_score,
        stack_probability, stack_candidates, stack_proposers (the members whose prediction it is)
        and proposers (those, then MEMBER#K for a member that ranks it K-th among its alternatives)."""
        from prodcat.ensemble.calibration import softmax_top

        predictions, names = self._in_member_order(predictions, names)
        if self.layout.descriptions and rows is None:
            raise ValueError("this stack model reads the rows' descriptions: pass rows")
        lookup = _PathLookup(hierarchy)
        members = _read_members(predictions, names, lookup, self.layout.score_columns)
        members = _with_context(
            members,
            predictions,
            names,
            hierarchy,
            lookup,
            self.statistics.level_accuracy,
            {n: t for n, t in (candidate_scores or {}).items() if n in self.layout.candidate_columns},
            rows if self.layout.descriptions else None,
            alternatives,
            self.layout.alternatives,
        )
        row, slot, path, features = _features(members, self.layout, self.statistics, lookup)
        score = self.decision(features)
        order = np.lexsort((slot, -score, row))
        row, path, score = row[order], path[order], score[order]
        start = np.r_[True, row[1:] != row[:-1]] if len(row) else np.zeros(0, dtype=bool)
        first_of_row = np.maximum.accumulate(np.where(start, np.arange(len(row)), 0))
        out = pd.DataFrame({"indoml_id": members.ids[row], "rank": np.arange(len(row)) - first_of_row + 1})
        for d, level in enumerate(LEVELS):
            out[level] = lookup.labels[path, d]
        out["stack_score"] = score
        temperature = float(self.calibration["temperature"]) if self.calibration is not None else 1.0
        out["stack_probability"] = softmax_top(row, score, temperature)
        out["stack_candidates"] = np.bincount(row, minlength=len(members.ids))[row]
        proposed = members.paths[row] == path[:, None]
        out["stack_proposers"] = [",".join(n for n, p in zip(names, flags) if p) for flags in proposed]
        listed = {n: members.alternatives[n][row] == path[:, None] for n in self.layout.alternatives}
        out["proposers"] = [
            ",".join(
                [n for n, p in zip(names, proposed[i]) if p]
                + [f"{n}#{int(np.argmax(flags[i])) + 1}" for n, flags in listed.items() if flags[i].any()]
            )
            for i in range(len(row))
        ]
        return out

    def _in_member_order(self, predictions, names):
        if sorted(names) != sorted(self.members):
            raise ValueError(
                f"the stack model was fit on members {', '.join(self.members)}; got {', '.join(names) or 'none'}"
            )
        by_name = dict(zip(names, predictions))
        return [by_name[n] for n in self.members], list(self.members)

    # ---- persistence ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "kind": "prodcat stack (pairwise logistic ranker over candidate paths)",
            "members": self.members,
            "score_columns": self.layout.score_columns,
            "candidate_columns": self.layout.candidate_columns,
            "descriptions": self.layout.descriptions,
            "alternatives": self.layout.alternatives,
            "level_accuracy": self.statistics.level_accuracy,
            "item_accuracy": self.statistics.item_accuracy,
            "score_quantiles": self.statistics.quantiles,
            "features": [
                {"name": n, "mean": float(mu), "scale": float(s), "coef": float(c)}
                for n, mu, s, c in zip(self.feature_names, self.mean, self.scale, self.coef)
            ],
            "intercept": float(self.intercept),
            "params": self.params,
            "selection": self.selection,
            "validation": self.validation,
            "calibration": self.calibration,
        }

    def save(self, path) -> None:
        from prodcat.data.io import write_text

        write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", path)

    @classmethod
    def load(cls, path) -> StackModel:
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(path, f"not a saved stack model: {exc}") from exc
        if not isinstance(obj, dict) or obj.get("format_version") != FORMAT_VERSION:
            raise InputError(path, f"not a stack model of format_version {FORMAT_VERSION}")
        try:
            features = obj["features"]
            layout = Layout(
                tuple(obj["members"]),
                {k: list(v) for k, v in obj["score_columns"].items()},
                {k: list(v) for k, v in obj["candidate_columns"].items()},
                bool(obj["descriptions"]),
                {k: int(v) for k, v in obj["alternatives"].items()},
            )
            model = cls(
                layout=layout,
                statistics=_Statistics(obj["level_accuracy"], obj["item_accuracy"], obj["score_quantiles"]),
                mean=np.array([f["mean"] for f in features], dtype=np.float64),
                scale=np.array([f["scale"] for f in features], dtype=np.float64),
                coef=np.array([f["coef"] for f in features], dtype=np.float64),
                intercept=float(obj["intercept"]),
                params=dict(obj["params"]),
                selection=dict(obj.get("selection") or {}),
                validation=dict(obj.get("validation") or {}),
                calibration=_checked_calibration(obj.get("calibration"), path),
            )
            names = [f["name"] for f in features]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(path, f"malformed stack model: {exc!r}") from exc
        if names != layout.feature_names():
            raise InputError(path, f"features {names} do not match the members' {layout.feature_names()}")
        return model


def _checked_calibration(obj, path) -> dict | None:
    if obj is None:
        return None
    from prodcat.ensemble.calibration import check_calibration

    check_calibration(obj, path)
    if not (isinstance(obj.get("temperature"), (int, float)) and obj["temperature"] > 0):
        raise InputError(path, "the stack's calibration needs a temperature > 0")
    return obj


def calibrate_stack(
    model: StackModel, ranked: pd.DataFrame, truth: pd.DataFrame, source="truth", unseen_share: float = 0.0
) -> pd.DataFrame:
    """Fits the model's calibration on cross-fitted candidates (`cross_fit_stack(...,
    with_candidates=True)`): the softmax temperature that best predicts the true candidate, then an
    isotonic map of the chosen candidate's probability to its chance of being right, scaled by
    (1 - unseen_share): the chance that a new row's path is no training path. Returns the
    rows' chosen candidates with stack_probability and confidence (their cross-fitted values)."""
    from prodcat.ensemble.calibration import fit_calibration, fit_temperature, item_correct, softmax_top

    ids = ranked["indoml_id"].to_numpy(dtype=np.int64)
    _, row = np.unique(ids, return_inverse=True)
    target = item_correct(truth, ranked, source)
    temperature = fit_temperature(row, ranked["stack_score"].to_numpy(dtype=np.float64), target)
    ranked = ranked.assign(stack_probability=softmax_top(row, ranked["stack_score"].to_numpy(), temperature))
    first = (ranked["rank"] == 1).to_numpy()
    calibration = fit_calibration(
        ranked["stack_probability"].to_numpy()[first], target[first], "stack_probability", unseen_share
    )
    model.calibration = {"temperature": temperature, **calibration}
    return model.chosen(ranked)


def _best_per_row(row, slot, score) -> np.ndarray:
    """Index of each row's highest-scoring candidate (ties: the lower slot)."""
    order = np.lexsort((slot, -score, row))
    return order[np.r_[True, row[order][1:] != row[order][:-1]]]


def _layout(predictions, names, candidate_scores, rows, alternatives=None) -> Layout:
    score_columns = {name: [c for c in SCORE_COLUMNS if c in frame.columns] for frame, name in zip(predictions, names)}
    candidate_columns = {
        name: [c for c in ("logprob", "logprob_per_token") if c in table.columns]
        for name, table in (candidate_scores or {}).items()
        if name in names
    }
    counts = {}
    for name, table in (alternatives or {}).items():
        if name not in names:
            raise ValueError(f"ranked alternatives of {name}, which is not a member ({', '.join(names)})")
        missing = [c for c in ("indoml_id", "rank") if c not in table.columns]
        if missing:
            raise InputError(name, f"ranked alternatives lack column(s) {', '.join(missing)}", column=missing[0])
        counts[name] = int(_ranked_ids(table, name)[1].max()) if len(table) else 0
    return Layout(
        tuple(names),
        score_columns,
        candidate_columns,
        rows is not None and "description" in rows.columns,
        {n: k for n, k in counts.items() if k >= 1},
    )


def _truth_arrays(truth: pd.DataFrame, ids: np.ndarray, lookup: _PathLookup, source="truth"):
    missing = [c for c in ("indoml_id", *LEVELS) if c not in truth.columns]
    if missing:
        raise InputError(source, f"expected labelled rows: missing {', '.join(missing)}", column=missing[0])
    position = pd.Index(truth["indoml_id"].to_numpy(dtype=np.int64)).get_indexer(ids)
    if (position < 0).any():
        raise InputError(source, f"no labels for indoml_id {ids[np.argmax(position < 0)]}", column="indoml_id")
    rows = truth.iloc[position].reset_index(drop=True)
    return lookup.path_ids(rows), [lookup.level_codes(rows, d) for d in range(len(LEVELS))]


def _ranker(features, target, row, C):
    """Pairwise logistic regression: for every row whose true path is a candidate, the true
    candidate's standardised features minus each other candidate's are labelled 1 (and the negated
    differences 0), so the model learns to rank within a row; rows without the true path carry no
    ranking information. (mean, scale, coef), or None when no row has such a pair."""
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    x = (features - mean) / scale
    true_of_row = np.full(int(row.max()) + 1 if len(row) else 0, -1)
    true_of_row[row[target]] = np.flatnonzero(target)
    other = np.flatnonzero(~target & (true_of_row[row] >= 0))
    if len(other) == 0:
        return None
    diff = x[true_of_row[row[other]]] - x[other]
    model = LogisticRegression(C=C, max_iter=1000, solver="newton-cholesky", fit_intercept=False)
    model.fit(np.vstack([diff, -diff]), np.r_[np.ones(len(diff)), np.zeros(len(diff))])
    return mean, scale, model.coef_[0].astype(np.float64)


def _select(features, target, row, slot, ids, best_proposed, params) -> tuple[float | None, dict]:
    """The C of the best inner cross-validated item accuracy, or None when deferring to the best
    member is at least as good (rows whose truth is no candidate count as wrong for both)."""
    n_rows = len(ids)
    fold = fold_of_rows(ids, min(params["inner_folds"], n_rows), params["seed"] + 1)[row]
    right_if_defer = np.zeros(n_rows)
    np.maximum.at(right_if_defer, row, (best_proposed & target).astype(float))
    accuracy = {"defer to the best member": float(right_if_defer.mean())}
    for C in params["C"]:
        score = best_proposed.astype(np.float64)  # a fold without ranking pairs defers
        for f in range(int(fold.max()) + 1):
            train, held = fold != f, fold == f
            fitted = _ranker(features[train], target[train], row[train], C) if held.any() and train.any() else None
            if fitted is not None:
                mean, scale, coef = fitted
                score[held] = ((features[held] - mean) / scale) @ coef
        accuracy[f"C={C:g}"] = float(target[_best_per_row(row, slot, score)].sum() / n_rows)
    best_c = max(params["C"], key=lambda C: (accuracy[f"C={C:g}"], -params["C"].index(C)))
    chosen = best_c if accuracy[f"C={best_c:g}"] > accuracy["defer to the best member"] else None
    return chosen, {"inner_accuracy": accuracy, "chosen": f"C={chosen:g}" if chosen else "defer to the best member"}


def fit_stack(
    predictions: list[pd.DataFrame],
    names: list[str],
    truth: pd.DataFrame,
    hierarchy: Hierarchy,
    params: dict | None = None,
    *,
    candidate_scores: dict[str, pd.DataFrame] | None = None,
    rows: pd.DataFrame | None = None,
    truth_source="truth",
    alternatives: dict[str, pd.DataFrame] | None = None,
) -> StackModel:
    """Fit the arbiter on labelled rows (validation): the members' predictions of them, optionally
    each member's scores of the candidates (see the module docstring), the rows (descriptions) and
    members' ranked alternatives (indoml_id, rank, the four levels: more candidates), and the truth."""
    params = resolve_params(params)
    names = list(names)
    lookup = _PathLookup(hierarchy)
    layout = _layout(predictions, names, candidate_scores, rows, alternatives)
    members = _read_members(predictions, names, lookup, layout.score_columns)
    truth_paths, truth_codes = _truth_arrays(truth, members.ids, lookup, truth_source)
    stats = _statistics(members, names, truth_paths, truth_codes, layout.score_columns)
    members = _with_context(
        members,
        predictions,
        names,
        hierarchy,
        lookup,
        stats.level_accuracy,
        {n: candidate_scores[n] for n in layout.candidate_columns},
        rows if layout.descriptions else None,
        alternatives,
        layout.alternatives,
    )
    row, slot, path, features = _features(members, layout, stats, lookup)
    target = path == truth_paths[row]
    best = max(names, key=lambda n: (stats.item_accuracy[n], -names.index(n)))
    best_proposed = members.paths[row, names.index(best)] == path
    C, selection = _select(features, target, row, slot, members.ids, best_proposed, params)
    fitted = _ranker(features, target, row, C) if C is not None else None
    if fitted is None:
        # all weight on "the best member proposed it"; no scaling
        n = features.shape[1]
        mean, scale, coef = np.zeros(n), np.ones(n), np.zeros(n)
        coef[layout.feature_names().index(f"{best}.proposed")] = 1.0
        selection.update(chosen="defer to the best member", deferred_to=best)
    else:
        mean, scale, coef = fitted
    return StackModel(layout, stats, mean, scale, coef, 0.0, params, selection, trained_on=members.ids.copy())


def fold_of_rows(ids: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's fold: a seeded permutation of the rows in sorted-id order, so the input order
    does not matter; fold sizes differ by at most one."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) < folds:
        raise ValueError(f"cross-fitting {folds} folds needs at least {folds} rows, got {len(ids)}")
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))
    return np.random.default_rng(seed).permutation(len(ids))[rank] % folds


def cross_fit_stack(
    predictions: list[pd.DataFrame],
    names: list[str],
    truth: pd.DataFrame,
    hierarchy: Hierarchy,
    params: dict | None = None,
    *,
    candidate_scores: dict[str, pd.DataFrame] | None = None,
    rows: pd.DataFrame | None = None,
    truth_source="truth",
    alternatives: dict[str, pd.DataFrame] | None = None,
    with_candidates: bool = False,
):
    """Out-of-fold predictions for every row: (table in the first table's row order, each row's
    fold, the fold models), and with_candidates also every row's ranked candidates (as
    `StackModel.rank_candidates`, cross-fitted). Fold f's rows are scored by a model fit on the
    other folds only."""
    params = resolve_params(params)
    ids = predictions[0]["indoml_id"].to_numpy(dtype=np.int64)
    fold = fold_of_rows(ids, params["folds"], params["seed"])
    id_fold = dict(zip(ids.tolist(), fold.tolist()))

    def split(frame, f):
        """(the frame's rows outside fold f, its rows in fold f)"""
        in_fold = (frame["indoml_id"].map(id_fold) == f).to_numpy()
        return frame[~in_fold], frame[in_fold]

    parts, models = [], []
    for f in range(params["folds"]):
        fitting, held_out = zip(*(split(frame, f) for frame in predictions))
        scores = {n: split(t, f) for n, t in (candidate_scores or {}).items()}
        ranked = {n: split(t, f) for n, t in (alternatives or {}).items()}
        model = fit_stack(
            list(fitting),
            names,
            truth,
            hierarchy,
            params,
            candidate_scores={n: t[0] for n, t in scores.items()},
            rows=rows,
            truth_source=truth_source,
            alternatives={n: t[0] for n, t in ranked.items()},
        )
        models.append(model)
        parts.append(
            model.rank_candidates(
                list(held_out),
                names,
                hierarchy,
                candidate_scores={n: t[1] for n, t in scores.items()},
                rows=rows,
                alternatives={n: t[1] for n, t in ranked.items()},
            )
        )
    candidates = pd.concat(parts, ignore_index=True)
    # the first table's row order, each row's candidates best first
    position = pd.Index(ids).get_indexer(candidates["indoml_id"].to_numpy(dtype=np.int64))
    candidates = candidates.iloc[np.lexsort((candidates["rank"].to_numpy(), position))].reset_index(drop=True)
    out = candidates[candidates["rank"] == 1].drop(columns=["rank", "proposers"]).reset_index(drop=True)
    return (out, fold, models, candidates) if with_candidates else (out, fold, models)


def candidate_union(tables: list[pd.DataFrame], hierarchy: Hierarchy) -> pd.DataFrame:
    """Every distinct (indoml_id, valid path) among the given predictions tables: the paths the
    members propose, which each member then scores (`candidate_scores`). Sorted by id, then path."""
    lookup = _PathLookup(hierarchy)
    parts = []
    for table in tables:
        path = lookup.path_ids(table)
        keep = path >= 0
        parts.append(pd.DataFrame({"indoml_id": table["indoml_id"].to_numpy(dtype=np.int64)[keep], "path": path[keep]}))
    union = (
        pd.concat(parts, ignore_index=True).drop_duplicates() if parts else pd.DataFrame({"indoml_id": [], "path": []})
    )
    union = union.sort_values(["indoml_id", "path"], kind="stable").reset_index(drop=True)
    out = pd.DataFrame({"indoml_id": union["indoml_id"].to_numpy(dtype=np.int64)})
    for d, level in enumerate(LEVELS):
        out[level] = lookup.labels[union["path"].to_numpy(dtype=np.int64), d]
    return out
