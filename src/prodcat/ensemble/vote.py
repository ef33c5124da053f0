"""Hard voting with hierarchy compliance (README stage `vote`), vectorised over rows.

The levels are decided top-down. At each level a model's vote is *valid* when it is a label and
the path chosen so far extended by it is a known prefix in the hierarchy (for the supergroup:
a known supergroup). None, missing and unknown labels are therefore never valid.

* Score: every valid vote counts 1, or in weighted mode the model's validation accuracy at that
  level (`level_accuracy[model][level]`, rounded to 6 decimals so that equal sums compare equal
  exactly). The label with the highest score wins.
* Ties (equal score): models are ranked by accuracy at that level, best first, then by their
  position in `model_names`; among the tied labels, the one backed by the highest-ranked model
  wins. Without `level_accuracy` the ranking is the order of `model_names`. Input order of rows
  or of files never decides anything.
* Fallback: when no vote at a level is valid, the most frequent child of the chosen parent in
  training (`Hierarchy.children` order: count descending, then alphabetical) is taken, and the
  level is named in `vote_fallback_levels`.

Implementation: each level's labels are factorised to integer codes, a (parent prefix id, label
code) pair is looked up in the table of known prefixes, and the per-model scores are compared
as an (rows × models × models) array, so that the cost is a few array passes per level.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy
from prodcat.runtime.errors import InputError

WEIGHT_SCALE = 1_000_000  # accuracies become integer weights: exact sums, exact ties


def vote_predictions(
    predictions: list[pd.DataFrame],
    model_names: list[str],
    hierarchy: Hierarchy,
    level_accuracy: dict[str, dict[str, float]] | None = None,
    weighted: bool = False,
) -> pd.DataFrame:
    """One hierarchy-valid path per row from several models' predictions (see module docstring).

    Every input needs indoml_id and the four level columns and must cover the same ids; errors
    name the model (`model_names` doubles as the file name in InputError, so the CLI passes the
    prediction files' paths or stems). Output rows follow the first input's order, with columns
    indoml_id, the four levels, vote_fallback_levels and vote_agreement.
    """
    _check_arguments(predictions, model_names, level_accuracy, weighted)
    ids, positions = _aligned_positions(predictions, model_names)
    n_rows, n_models = len(ids), len(model_names)
    table = _PrefixTable(hierarchy)

    chosen_prefix = np.zeros(n_rows, dtype=np.int64)  # the root: one parent for all rows
    out = pd.DataFrame({"indoml_id": ids})
    fallback_mask = np.zeros(n_rows, dtype=np.int64)
    agree = np.ones((n_rows, n_models), dtype=bool)
    for depth, level in enumerate(LEVELS):
        codes = np.column_stack(  # rows × models, in the first table's row order
            [table.codes(depth, frame[level])[position] for frame, position in zip(predictions, positions)]
        )
        candidates = table.lookup(depth, chosen_prefix[:, None], codes)  # prefix id or -1
        weights, rank = _weights_and_rank(model_names, level, level_accuracy, weighted)
        winner, has_valid = _pick(candidates, weights, rank)
        chosen_prefix = np.where(has_valid, winner, table.fallback_child(depth, chosen_prefix))
        fallback_mask |= (~has_valid).astype(np.int64) << depth
        out_codes = table.label_code(depth, chosen_prefix)
        agree &= codes == out_codes[:, None]
        out[level] = table.vocab[depth][out_codes]
    out["vote_fallback_levels"] = _fallback_names()[fallback_mask]
    out["vote_agreement"] = agree.sum(axis=1).astype(np.int64)
    return out


def _check_arguments(predictions, model_names, level_accuracy, weighted) -> None:
    if not predictions:
        raise ValueError("vote_predictions needs at least one predictions table")
    if len(predictions) != len(model_names):
        raise ValueError(f"{len(predictions)} predictions tables but {len(model_names)} model names")
    if len(set(model_names)) != len(model_names):
        raise ValueError(f"model names must be distinct: {list(model_names)}")
    if weighted and level_accuracy is None:
        raise ValueError("weighted voting needs level_accuracy")
    if level_accuracy is not None:
        for name in model_names:
            missing = [lv for lv in LEVELS if lv not in level_accuracy.get(name, {})]
            if missing:
                raise ValueError(f"level_accuracy has no {', '.join(missing)} accuracy for model {name!r}")


def _aligned_positions(predictions, model_names) -> tuple[np.ndarray, list[np.ndarray]]:
    """The first table's ids, and for each table the position of each of those ids in it."""
    for frame, name in zip(predictions, model_names):
        missing = [c for c in ("indoml_id", *LEVELS) if c not in frame.columns]
        if missing:
            raise InputError(name, f"predictions lack column(s) {', '.join(missing)}", column=missing[0])
        duplicated = frame["indoml_id"].duplicated()
        if duplicated.any():
            i = int(duplicated.to_numpy().argmax())
            raise InputError(name, f"duplicate indoml_id {frame['indoml_id'].iloc[i]}", column="indoml_id", row=i + 1)
    first_name = model_names[0]
    ids = predictions[0]["indoml_id"].to_numpy(dtype=np.int64)
    positions = []
    for frame, name in zip(predictions, model_names):
        own_ids = frame["indoml_id"].to_numpy(dtype=np.int64)
        position = pd.Index(own_ids).get_indexer(ids)
        if (position < 0).any():
            i = int((position < 0).argmax())
            raise InputError(name, f"no prediction for indoml_id {ids[i]}, which {first_name} has", column="indoml_id")
        if len(own_ids) != len(ids):
            extra = own_ids[~np.isin(own_ids, ids)][0]
            raise InputError(name, f"prediction for indoml_id {extra}, which {first_name} lacks", column="indoml_id")
        positions.append(position)
    return ids, positions


def _weights_and_rank(model_names, level, level_accuracy, weighted) -> tuple[np.ndarray, np.ndarray]:
    """Integer vote weights per model and each model's tie-break rank (0 = wins ties)."""
    n = len(model_names)
    if level_accuracy is None:
        return np.ones(n, dtype=np.int64), np.arange(n)
    accuracy = [float(level_accuracy[name][level]) for name in model_names]
    order = sorted(range(n), key=lambda k: (-accuracy[k], k))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    if weighted:
        weights = np.array([round(a * WEIGHT_SCALE) for a in accuracy], dtype=np.int64)
    else:
        weights = np.ones(n, dtype=np.int64)
    return weights, rank


def _pick(candidates: np.ndarray, weights: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the winning candidate (score, then the best-ranked backer) and whether any was valid."""
    n_models = candidates.shape[1]
    valid = candidates >= 0
    same = candidates[:, :, None] == candidates[:, None, :]  # rows × model k × model j
    score = (same & valid[:, None, :]) @ weights  # sum of weights of models voting like model k
    key = np.where(valid, score * n_models + (n_models - 1 - rank), -1)
    best = key.argmax(axis=1)
    rows = np.arange(len(candidates))
    return candidates[rows, best], valid.any(axis=1)


def _fallback_names() -> np.ndarray:
    """vote_fallback_levels text for each bit mask of fallback levels."""
    return np.array(
        [",".join(lv for d, lv in enumerate(LEVELS) if mask >> d & 1) for mask in range(1 << len(LEVELS))],
        dtype=object,
    )


class _PrefixTable:
    """Known path prefixes per depth as integer ids, with lookup by (parent id, label code)."""

    def __init__(self, hierarchy: Hierarchy):
        self.vocab: list[np.ndarray] = []  # labels per depth; a code indexes this
        self._label_index: list[pd.Index] = []
        self._key_index: list[pd.Index] = []  # position = prefix id; value = parent id * |vocab| + code
        self._prefix_label: list[np.ndarray] = []  # label code of each prefix id
        self._fallback: list[np.ndarray] = []  # most frequent child's prefix id, per parent id
        parent_tuples: list[tuple] = [()]
        for depth, level in enumerate(LEVELS):
            labels = np.array(hierarchy.labels(level), dtype=object)
            label_index = pd.Index(labels)
            prefixes = hierarchy.paths[list(LEVELS[: depth + 1])].drop_duplicates()
            prefix_tuples = list(prefixes.itertuples(index=False, name=None))
            parent_position = {p: i for i, p in enumerate(parent_tuples)}
            parent_ids = np.array([parent_position[p[:-1]] for p in prefix_tuples], dtype=np.int64)
            label_codes = label_index.get_indexer(prefixes[level])
            key_index = pd.Index(parent_ids * len(labels) + label_codes)
            first_children = label_index.get_indexer([hierarchy.children(p)[0] for p in parent_tuples])
            fallback_keys = np.arange(len(parent_tuples), dtype=np.int64) * len(labels) + first_children
            self.vocab.append(labels)
            self._label_index.append(label_index)
            self._key_index.append(key_index)
            self._prefix_label.append(label_codes)
            self._fallback.append(key_index.get_indexer(fallback_keys))
            parent_tuples = prefix_tuples

    def codes(self, depth: int, labels: pd.Series) -> np.ndarray:
        """Label codes at a depth; -1 for None, missing or unknown labels. Factorising first
        hashes each distinct string once (fast for Arrow-backed strings too)."""
        row_codes, uniques = pd.factorize(labels, use_na_sentinel=True)
        unique_codes = self._label_index[depth].get_indexer(pd.Index(np.asarray(uniques, dtype=object), dtype=object))
        return np.append(unique_codes, -1)[row_codes]

    def lookup(self, depth: int, parent_ids: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Prefix ids of (parent, label) pairs; -1 where the label is missing or not under the parent."""
        keys = parent_ids * len(self.vocab[depth]) + codes
        found = self._key_index[depth].get_indexer(keys.ravel()).reshape(codes.shape)
        return np.where(codes >= 0, found, -1)

    def fallback_child(self, depth: int, parent_ids: np.ndarray) -> np.ndarray:
        return self._fallback[depth][parent_ids]

    def label_code(self, depth: int, prefix_ids: np.ndarray) -> np.ndarray:
        return self._prefix_label[depth][prefix_ids]
