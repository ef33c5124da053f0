"""Hallucination correction: replace predicted labels that are not a valid hierarchy path.

A seq2seq labeler may write a label that does not exist (a typo, a truncated or invented brand) or
a path whose levels do not fit together. Two corrections, both deterministic:

- ``topdown`` (the paper's; README stage `correct`): level by level, keep a label that is a valid child of
  the labels already chosen above it, else take the most similar such child. A missing label takes
  the most frequent child. Fast because it works per distinct (parent, predicted label) pair.
- ``joint``: the valid path that maximizes the weighted sum of the per-level similarities to the
  four predicted labels, so a typo high up cannot drag a correct brand into the wrong branch. A
  missing label scores 0 against every label. A prediction that is already a valid path is kept.
  Fast because similarities are computed once per distinct predicted string and level, identical
  predicted paths are scored once, and the maximum is factored through the (supergroup, group,
  module) nodes: score = node part + best brand within the node, where the brand part is computed
  only for the few nodes that can still win (an exact bound, see `_joint`).

Similarity is a rapidfuzz scorer (0..100). Ties: the earlier label in `Hierarchy.children` order
(topdown) or the earlier path in `Hierarchy.paths` order (joint), i.e. the more frequent one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy
from prodcat.data.target_text import salvage_target

METHODS = ("topdown", "joint")
SCORERS = {
    "ratio": fuzz.ratio,
    "QRatio": fuzz.QRatio,
    "WRatio": fuzz.WRatio,
    "partial_ratio": fuzz.partial_ratio,
    "token_sort_ratio": fuzz.token_sort_ratio,
    "token_set_ratio": fuzz.token_set_ratio,
}
_PARALLEL_PAIRS = 1_000_000  # a similarity matrix at least this large is computed on all cores
_TUPLE_CHUNK = 16384  # distinct predicted paths scored at a time (bounds chunk × n_nodes float32 matrices)


def correct_predictions(
    predictions: pd.DataFrame,
    hierarchy: Hierarchy,
    method: str = "topdown",
    weights: dict[str, float] | None = None,
    scorer: str = "ratio",
    salvage: bool = False,
) -> pd.DataFrame:
    """Predictions with every row turned into a valid hierarchy path.

    Same rows and order, other columns kept (the labeler's confidence columns, e.g. ``logprob``,
    still score what the labeler wrote, not the corrected path); adds ``corrected_<level>`` (bool:
    the label changed, a missing label always does), ``corrected_levels`` (changed level names,
    comma-joined) and ``corrected`` (bool: the row changed at some level).
    ``weights`` (joint only) maps level → weight, missing levels weigh 1. With ``salvage``, a row
    whose generated ``text`` failed to parse (``parse_ok`` False) is corrected from the parts that
    can be read from it (`target_text.salvage_target`) rather than from nothing.
    """
    if method not in METHODS:
        raise ValueError(f"unknown correction method {method!r}; expected one of {', '.join(METHODS)}")
    if scorer not in SCORERS:
        raise ValueError(f"unknown scorer {scorer!r}; expected one of {', '.join(SCORERS)}")
    missing = [level for level in LEVELS if level not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack the label column(s) {', '.join(missing)}")
    original = [_label_array(predictions[level]) for level in LEVELS]
    labels = [column.copy() for column in original]
    if salvage and {"text", "parse_ok"} <= set(predictions.columns):
        texts = predictions["text"].to_numpy(dtype=object)
        for i in np.flatnonzero(~predictions["parse_ok"].astype(bool).to_numpy()):
            for k, part in enumerate(salvage_target(texts[i])):
                if labels[k][i] is None:
                    labels[k][i] = part
    if method == "topdown":
        corrected = _topdown(labels, hierarchy, SCORERS[scorer])
    else:
        corrected = _joint(labels, hierarchy, SCORERS[scorer], _level_weights(weights))

    out = predictions.copy()
    changed_names = np.full(len(out), "", dtype=object)
    for level, before, after in zip(LEVELS, original, corrected):
        changed = before != after  # object arrays compare elementwise; None != any label
        out[level] = after
        out[f"corrected_{level}"] = changed
        changed_names = changed_names + np.where(changed, level + ",", "").astype(object)
    out["corrected_levels"] = [names[:-1] for names in changed_names]
    out["corrected"] = out["corrected_levels"] != ""
    return out


# ---- shared helpers -------------------------------------------------------------------------
def _label_array(column: pd.Series) -> np.ndarray:
    """Labels as an object array of str, None where missing (None, NaN or pd.NA)."""
    values = column.to_numpy(dtype=object, copy=True)
    missing = pd.isna(values)
    values[missing] = None
    if pd.api.types.infer_dtype(values[~missing]) not in ("string", "empty"):
        values[~missing] = [str(v) for v in values[~missing]]
    return values


def _level_weights(weights: dict[str, float] | None) -> np.ndarray:
    weights = dict(weights or {})
    unknown = set(weights) - set(LEVELS)
    if unknown:
        raise ValueError(f"weights name unknown level(s) {', '.join(sorted(unknown))}")
    values = np.array([float(weights.get(level, 1.0)) for level in LEVELS])
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("weights must be finite and non-negative")
    return values


def _similarity(queries, choices, scorer) -> np.ndarray:
    """queries × choices similarity (float64, 0..100)."""
    if len(queries) == 0 or len(choices) == 0:
        return np.zeros((len(queries), len(choices)))
    workers = -1 if len(queries) * len(choices) >= _PARALLEL_PAIRS else 1  # threads cost ~ms to start
    return process.cdist(list(queries), list(choices), scorer=scorer, dtype=np.float64, workers=workers)


def _segments(sorted_keys: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal values in a sorted array."""
    if len(sorted_keys) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    stops = np.r_[starts[1:], len(sorted_keys)]
    return list(zip(starts.tolist(), stops.tolist()))


# ---- topdown --------------------------------------------------------------------------------
def _topdown(labels: list[np.ndarray], hierarchy: Hierarchy, scorer) -> list[np.ndarray]:
    """Level by level; every distinct (chosen parent path, predicted label) pair is solved once."""
    n_rows = len(labels[0])
    parent_codes = np.zeros(n_rows, dtype=np.int64)  # index into parent_paths, per row
    parent_paths: list[tuple[str, ...]] = [()]
    corrected = []
    for predicted in labels:
        codes, distinct = pd.factorize(predicted)  # a missing label gets code -1
        base = len(distinct) + 1
        pair_keys, row_pair = np.unique(parent_codes * base + codes + 1, return_inverse=True)
        pair_parent, pair_label = pair_keys // base, pair_keys % base - 1
        chosen = np.empty(len(pair_keys), dtype=object)
        for start, stop in _segments(pair_parent):  # pair_keys are sorted, so by parent
            children = hierarchy.children(parent_paths[pair_parent[start]])
            queries = [distinct[c] if c >= 0 else None for c in pair_label[start:stop]]
            chosen[start:stop] = _closest_children(queries, children, scorer)
        corrected.append(chosen[row_pair])

        # The chosen (parent, label) pairs are the parents of the next level.
        _, first_pair, child_of_pair = np.unique(
            np.stack([pair_parent, pd.factorize(chosen)[0]], axis=1), axis=0, return_index=True, return_inverse=True
        )
        parent_paths = [parent_paths[pair_parent[p]] + (chosen[p],) for p in first_pair]
        parent_codes = child_of_pair.reshape(-1)[row_pair]
    return corrected


def _closest_children(queries: list[str | None], children: list[str], scorer) -> list[str]:
    """Each query itself if it is a child, the most frequent child if missing, else the most similar
    child (first in `children` order on ties, which is frequency order)."""
    valid = set(children)
    result = [q if q in valid else children[0] for q in queries]
    fuzzy = [i for i, q in enumerate(queries) if q is not None and q not in valid]
    if fuzzy:
        best = _similarity([queries[i] for i in fuzzy], children, scorer).argmax(axis=1)
        for i, b in zip(fuzzy, best):
            result[i] = children[b]
    return result


# ---- joint ----------------------------------------------------------------------------------
class _PathIndex:
    """Integer view of the hierarchy: per-level label codes of each path, and the paths grouped
    by their (supergroup, group, module) node, in path order within a node."""

    def __init__(self, hierarchy: Hierarchy):
        paths = hierarchy.paths
        self.labels = [hierarchy.labels(level) for level in LEVELS]
        self.codes = [
            pd.Index(self.labels[d]).get_indexer(paths[level]).astype(np.int64) for d, level in enumerate(LEVELS)
        ]
        node_keys = np.stack(self.codes[:3], axis=1)
        nodes, path_node = np.unique(node_keys, axis=0, return_inverse=True)
        path_node = path_node.reshape(-1)
        self.node_codes = [nodes[:, d] for d in range(3)]
        by_node = np.argsort(path_node, kind="stable")  # path indices, node by node
        bounds = _segments(path_node[by_node])
        self.node_paths = [by_node[start:stop] for start, stop in bounds]  # in path order
        self.node_brands = [[self.labels[3][c] for c in self.codes[3][p]] for p in self.node_paths]
        self.radix = np.array([len(lab) for lab in self.labels], dtype=np.int64)
        self.path_keys = np.sort(self._combine(self.codes))

    def _combine(self, codes: list[np.ndarray]) -> np.ndarray:
        key = np.zeros(len(codes[0]), dtype=np.int64)
        for d in range(4):
            key = key * self.radix[d] + codes[d]
        return key

    def valid_rows(self, labels: list[np.ndarray]) -> np.ndarray:
        codes = [pd.Index(self.labels[d]).get_indexer(labels[d]) for d in range(4)]
        known = np.all(np.stack(codes) >= 0, axis=0)
        key = self._combine([np.where(known, c, 0) for c in codes])
        return known & np.isin(key, self.path_keys)


def _joint(labels: list[np.ndarray], hierarchy: Hierarchy, scorer, weights: np.ndarray) -> list[np.ndarray]:
    """Best path per distinct invalid predicted path.

    A path's score is ((w·s_supergroup + w·s_group) + w·s_module) + w·s_brand: a node part
    (node = supergroup, group, module) plus a brand part. The node parts are screened in float32
    for every node; the best path of the node with the largest one gives a floor, and only nodes
    whose node part + the largest possible brand part (weight × 100) + a margin for float32
    rounding reaches it are searched brand by brand. Exact: the final choice is made on float64
    scores computed in the order above.
    """
    index = _PathIndex(hierarchy)
    todo = np.flatnonzero(~index.valid_rows(labels))
    corrected = [lab.copy() for lab in labels]
    if len(todo) == 0:
        return corrected

    # Distinct predicted strings per level (code -1 = missing), then distinct predicted paths.
    factorized = [pd.factorize(lab[todo]) for lab in labels]
    tuples, row_tuple = np.unique(np.stack([f[0] for f in factorized], axis=1), axis=0, return_inverse=True)
    # Weighted similarity of each distinct string to each label of its level; the last row, left
    # at zero, serves the missing label (code -1 indexes it).
    level_scores = []
    for d in range(3):
        scores = np.zeros((len(factorized[d][1]) + 1, len(index.labels[d])))
        scores[:-1] = weights[d] * _similarity(factorized[d][1], index.labels[d], scorer)
        level_scores.append(scores)
    screen_scores = [scores.astype(np.float32) for scores in level_scores]
    # The most a brand part can add, plus a margin well above the float32 rounding of node parts
    # (relative 1e-7 of at most 100 × the weight sum).
    reach_below_floor = weights[3] * 100.0 + 1e-3 * weights.sum() + 1e-9
    brands = factorized[3][1]
    # The node part depends only on the (supergroup, group, module) strings: computed once per
    # distinct triple. Tuples are sorted, so a triple's tuples are contiguous.
    triples, tuple_triple = np.unique(tuples[:, :3], axis=0, return_inverse=True)
    tuple_triple = tuple_triple.reshape(-1)

    best_path = np.empty(len(tuples), dtype=np.int64)
    for start in range(0, len(tuples), _TUPLE_CHUNK):
        chunk = tuples[start : start + _TUPLE_CHUNK]
        chunk_triples, tuple_row = np.unique(tuple_triple[start : start + _TUPLE_CHUNK], return_inverse=True)
        screen = _node_part(triples[chunk_triples], screen_scores, index)
        lead = screen.argmax(axis=1)[tuple_row]
        lead_brand, _ = _best_brand_in_nodes(lead, chunk[:, 3], brands, index, scorer, weights[3])
        floor = _exact_node_part(chunk, lead, level_scores, index) + lead_brand
        # A node whose node part + the largest possible brand part cannot reach the floor is out.
        reach = (floor - reach_below_floor).astype(np.float32)
        cand_tuple, cand_node = np.nonzero(np.take(screen, tuple_row, axis=0) >= reach[:, None])
        brand_part, path = _best_brand_in_nodes(cand_node, chunk[cand_tuple, 3], brands, index, scorer, weights[3])
        total = _exact_node_part(chunk[cand_tuple], cand_node, level_scores, index) + brand_part
        order = np.lexsort((path, -total, cand_tuple))  # per tuple: best score, then first path
        first = order[np.r_[True, cand_tuple[order][1:] != cand_tuple[order][:-1]]]
        best_path[start + cand_tuple[first]] = path[first]

    chosen = best_path[row_tuple.reshape(-1)]
    for d, level in enumerate(LEVELS):
        corrected[d][todo] = hierarchy.paths[level].to_numpy(dtype=object)[chosen]
    return corrected


def _node_part(triples: np.ndarray, level_scores: list[np.ndarray], index: _PathIndex) -> np.ndarray:
    """triples × nodes: summed weighted supergroup, group and module similarity of each node
    (in the dtype of level_scores)."""
    total = np.take(level_scores[0][triples[:, 0]], index.node_codes[0], axis=1)
    for d in (1, 2):
        total += np.take(level_scores[d][triples[:, d]], index.node_codes[d], axis=1)
    return total


def _exact_node_part(tuples: np.ndarray, nodes: np.ndarray, level_scores: list[np.ndarray], index: _PathIndex):
    """The float64 node part of one node per tuple."""
    total = level_scores[0][tuples[:, 0], index.node_codes[0][nodes]]
    for d in (1, 2):
        total = total + level_scores[d][tuples[:, d], index.node_codes[d][nodes]]
    return total


def _best_brand_in_nodes(nodes, brand_codes, brands, index: _PathIndex, scorer, weight: float):
    """For each (node, brand string code) pair: the weighted similarity of the node's best brand
    and the first path (hierarchy order) that has it. Each distinct pair is solved once; a
    missing brand (code -1) scores 0 everywhere, so the node's first path wins."""
    pair_keys, pair_of = np.unique(nodes * (len(brands) + 1) + brand_codes + 1, return_inverse=True)
    pair_node, pair_brand = pair_keys // (len(brands) + 1), pair_keys % (len(brands) + 1) - 1
    scores = np.zeros(len(pair_keys))
    paths = np.empty(len(pair_keys), dtype=np.int64)
    for start, stop in _segments(pair_node):  # sorted keys: one segment per node
        node = pair_node[start]
        queried = pair_brand[start:stop]
        present = queried >= 0
        best = np.zeros(stop - start, dtype=np.int64)
        if present.any():
            similarity = weight * _similarity(brands[queried[present]], index.node_brands[node], scorer)
            best[present] = similarity.argmax(axis=1)
            scores[start:stop][present] = similarity[np.arange(len(similarity)), best[present]]
        paths[start:stop] = index.node_paths[node][best]
    pair_of = pair_of.reshape(-1)
    return scores[pair_of], paths[pair_of]
