"""Hierarchy-constrained decoding: a seq2seq labeler can only generate known label paths.

The set of valid outputs is the token sequences of `format_target(path)` for every path of the
hierarchy, exactly as the tokenizer encodes the whole target (with the EOS it appends). With
SentencePiece, "a | b" is not the concatenation of the pieces of "a" and "b", and the model learned
the whole-target pieces, so the trie is built over whole-target tokenizations only.

The trie is a flat node array, not a Python object per node: the real IndoML label space (12,885
paths, byte sequences up to 165 tokens) has ~144k distinct prefixes, held in ~6 MB of NumPy arrays
(edges sorted by `parent * base + token`, so the children of a node are contiguous) and built in
about a second from the token ids. A decoding state is a node id (the node reached by EOS is a leaf
that names its path, see `path_of`), OFF (the prefix left the trie: only EOS is allowed, so the row
ends and fails to parse — cannot happen under the constraint) or DONE (after EOS: only pad, as
generate pads finished rows).

Decoding asks for the allowed tokens of every row at every step. Walking each prefix from the root
costs O(length) per row and step; instead the state of a prefix is derived from the state of its
prefix one token shorter, remembered from the previous step by its bytes (beam search reorders rows,
so a row's previous prefix is found by value, not by position). Unknown prefixes are walked in full.

Two adapters for `model.generate`, both stripping the decoder start token:
- `constrained_logits_processor(trie)` (recommended): one vectorised call per step for all rows
  and beams, one host copy of the decoder ids;
- `prefix_allowed_tokens_fn(trie)`: the `prefix_allowed_tokens_fn=` callable of `generate`, called
  by transformers once per row and beam (on a GPU: one host copy per row and beam).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from prodcat import LEVELS
from prodcat.data.target_text import format_target

OFF, DONE = -1, -2  # decoding states that are not trie nodes
UNSEEN = -3  # IncrementalStates: the shorter prefix was not seen at the previous step
ROOT = 0


class PathTrie:
    """The token sequences of all label paths as a prefix tree over token ids.

    Every method takes decoder tokens *without* the decoder start token."""

    def __init__(
        self,
        sequences: Sequence[Sequence[int]],
        paths: Sequence[tuple[str, ...]],
        *,
        eos_token_id: int,
        pad_token_id: int,
    ):
        if len(sequences) != len(paths) or not sequences:
            raise ValueError("need one token sequence per path, and at least one path")
        for seq, path in zip(sequences, paths):
            if not seq or seq[-1] != eos_token_id or eos_token_id in seq[:-1]:
                raise ValueError(f"the target of {path} must end with the EOS token {eos_token_id}, and only there")
        self.paths = [tuple(p) for p in paths]
        self.eos_token_id, self.pad_token_id = int(eos_token_id), int(pad_token_id)
        lengths = np.array([len(s) for s in sequences])
        self.max_length = int(lengths.max())
        padded = np.full((len(sequences), self.max_length), -1, dtype=np.int64)
        for i, seq in enumerate(sequences):
            padded[i, : len(seq)] = seq
        self._base = int(padded.max()) + 1  # edge key = parent * base + token
        self._build(padded)

    @classmethod
    def from_hierarchy(cls, hierarchy, tokenizer) -> PathTrie:
        paths = list(hierarchy.paths[list(LEVELS)].itertuples(index=False, name=None))
        sequences = tokenizer(text_target=[format_target(p) for p in paths])["input_ids"]
        return cls(sequences, paths, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)

    def _build(self, padded: np.ndarray) -> None:
        """Nodes are the distinct prefixes of the lexicographically sorted sequences: row r starts a
        new node at depth d when it differs from row r-1 somewhere in columns 0..d."""
        n, width = padded.shape
        order = np.lexsort(padded.T[::-1])  # stable: identical sequences keep hierarchy order
        rows = padded[order]
        differs = rows[1:] != rows[:-1]
        first_diff = np.zeros(n, dtype=np.int64)
        first_diff[1:] = np.where(differs.any(axis=1), differs.argmax(axis=1), width)
        parents, tokens, children = [], [], []
        leaf_rows, leaf_nodes = [], []
        node_above = np.zeros(n, dtype=np.int64)  # each row's node one level up; the root first
        next_id = ROOT + 1
        for depth in range(width):
            present = rows[:, depth] >= 0
            new = (first_diff <= depth) & present
            ids = np.where(new, next_id + np.cumsum(new) - 1, -1)
            parents.append(node_above[new])
            tokens.append(rows[new, depth])
            children.append(ids[new])
            ends = new & (rows[:, depth] == self.eos_token_id)
            leaf_rows.append(order[ends])
            leaf_nodes.append(ids[ends])
            next_id += int(new.sum())
            node_above = np.where(present, np.maximum.accumulate(ids), -1)
        self.n_nodes = next_id
        self.n_ambiguous = n - sum(len(r) for r in leaf_rows)  # paths whose targets tokenize alike
        keys = np.concatenate(parents) * self._base + np.concatenate(tokens)
        by_key = np.argsort(keys, kind="stable")
        self._edge_keys = keys[by_key]
        self._edge_tokens = np.concatenate(tokens)[by_key]
        self._edge_children = np.concatenate(children)[by_key]
        self._child_start = np.searchsorted(self._edge_keys, np.arange(self.n_nodes + 1) * self._base)
        self._leaf_path = np.full(self.n_nodes, -1, dtype=np.int64)
        self._leaf_path[np.concatenate(leaf_nodes)] = np.concatenate(leaf_rows)
        self._ended = np.concatenate([[True, False], self._leaf_path >= 0])  # indexed by state - DONE

    @property
    def nbytes(self) -> int:
        return sum(
            a.nbytes
            for a in (
                self._edge_keys,
                self._edge_tokens,
                self._edge_children,
                self._child_start,
                self._leaf_path,
                self._ended,
            )
        )

    # ---- states -------------------------------------------------------------------------
    def step(self, states: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """The states after appending one token to prefixes in the given states."""
        states, tokens = np.asarray(states, dtype=np.int64), np.asarray(tokens, dtype=np.int64)
        ended = self._ended[states - DONE]  # DONE or a leaf (a leaf comes right after EOS)
        # without a matching edge: EOS finishes the row, anything else leaves the trie
        out = np.where(ended | (tokens == self.eos_token_id), DONE, OFF)
        live = (states >= 0) & ~ended & (tokens >= 0) & (tokens < self._base)
        keys = states[live] * self._base + tokens[live]
        at = np.minimum(np.searchsorted(self._edge_keys, keys), len(self._edge_keys) - 1)
        hit = self._edge_keys[at] == keys
        out[np.flatnonzero(live)[hit]] = self._edge_children[at[hit]]
        return out

    def walk(self, prefixes: np.ndarray) -> np.ndarray:
        """States of a (rows, length) array of prefixes, walked from the root."""
        prefixes = np.asarray(prefixes, dtype=np.int64)
        states = np.full(len(prefixes), ROOT, dtype=np.int64)
        for pos in range(prefixes.shape[1]):
            states = self.step(states, prefixes[:, pos])
        return states

    def allowed_pairs(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, token) index pairs of the allowed next tokens of each state: a node's children
        (ascending), EOS when OFF, pad after EOS (at a leaf or DONE)."""
        states = np.asarray(states, dtype=np.int64)
        node = np.where(states >= 0, states, ROOT)
        start = self._child_start[node]
        expand = (states >= 0) & (self._child_start[node + 1] > start)  # a node other than a leaf
        counts = np.where(expand, self._child_start[node + 1] - start, 1)
        rows = np.repeat(np.arange(len(states)), counts)
        offsets = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        edge = np.minimum(np.repeat(start, counts) + offsets, len(self._edge_tokens) - 1)
        special = np.where(states == OFF, self.eos_token_id, self.pad_token_id)  # leaf or DONE: pad
        cols = np.where(np.repeat(expand, counts), self._edge_tokens[edge], np.repeat(special, counts))
        return rows, cols

    # ---- single prefixes: the same rules without array overhead ----------------------------
    def step_one(self, state: int, token: int) -> int:
        """`step` for one prefix."""
        if state == DONE or (state >= 0 and self._leaf_path[state] >= 0):
            return DONE
        if state >= 0 and 0 <= token < self._base:
            key = state * self._base + token
            at = int(np.searchsorted(self._edge_keys, key))
            if at < len(self._edge_keys) and self._edge_keys[at] == key:
                return int(self._edge_children[at])
        return DONE if token == self.eos_token_id else OFF

    def allowed_one(self, state: int) -> list[int]:
        """`allowed_pairs` for one state."""
        if state == OFF:
            return [self.eos_token_id]
        start, end = self._child_start[state], self._child_start[state + 1]
        return self._edge_tokens[start:end].tolist() if state >= 0 and end > start else [self.pad_token_id]

    def walk_one(self, prefix_ids: Sequence[int]) -> int:
        state = ROOT
        for token in prefix_ids:
            state = self.step_one(state, int(token))
        return state

    def allowed_next(self, prefix_ids: Sequence[int]) -> list[int]:
        """Allowed next tokens after a decoder prefix (without the decoder start token), ascending."""
        return self.allowed_one(self.walk_one(prefix_ids))

    def path_of(self, generated_ids: Sequence[int]) -> tuple[str, ...] | None:
        """The label path whose target a generation spells, read up to its first EOS; None when it
        is not a complete known path. Exact where decoding text would not be (a tokenizer that maps
        characters to <unk> or normalises spaces)."""
        ids = list(generated_ids)
        if self.eos_token_id not in ids:
            return None
        ids = ids[: ids.index(self.eos_token_id) + 1]
        state = self.walk_one(ids)
        return self.paths[self._leaf_path[state]] if state >= 0 and self._leaf_path[state] >= 0 else None


def max_target_tokens(trie: PathTrie) -> int:
    """The max_new_tokens that lets every path finish: the longest target, EOS included."""
    return trie.max_length


class IncrementalStates:
    """Decoding states of prefixes that grow by one token per step, without re-walking them.

    Prefixes of the previous length are remembered by value (their bytes), so beam reordering does
    not matter; a prefix whose parent was not seen (a new generate call) is walked from the root."""

    def __init__(self, trie: PathTrie):
        self.trie = trie
        self._length = -1
        self._previous: dict[bytes, int] = {}
        self._current: dict[bytes, int] = {}

    def _start(self, length: int) -> None:
        if length != self._length:
            self._previous = self._current if length == self._length + 1 else {}
            self._current, self._length = {}, length

    def rows(self, prefixes: np.ndarray) -> np.ndarray:
        """States of a (rows, length) array of prefixes (all rows and beams of one step)."""
        prefixes = np.ascontiguousarray(prefixes, dtype=np.int64)
        self._start(prefixes.shape[1])
        if prefixes.shape[1] == 0:
            return np.full(len(prefixes), ROOT, dtype=np.int64)
        parents = np.array([self._previous.get(row[:-1].tobytes(), UNSEEN) for row in prefixes], dtype=np.int64)
        unseen = parents == UNSEEN
        states = np.empty(len(prefixes), dtype=np.int64)
        states[~unseen] = self.trie.step(parents[~unseen], prefixes[~unseen, -1])
        if unseen.any():
            states[unseen] = self.trie.walk(prefixes[unseen])
        self._current.update(zip((row.tobytes() for row in prefixes), states.tolist()))
        return states

    def row(self, prefix: np.ndarray) -> int:
        """The state of one prefix (one row or beam of a step)."""
        prefix = np.ascontiguousarray(prefix, dtype=np.int64)
        self._start(len(prefix))
        if len(prefix) == 0:
            return ROOT
        parent = self._previous.get(prefix[:-1].tobytes())
        state = self.trie.walk_one(prefix) if parent is None else self.trie.step_one(parent, int(prefix[-1]))
        self._current[prefix.tobytes()] = state
        return state


def prefix_allowed_tokens_fn(trie: PathTrie):
    """`generate(prefix_allowed_tokens_fn=...)`: (batch_id, decoder ids with start token) → allowed ids."""
    states = IncrementalStates(trie)

    def allowed(batch_id: int, input_ids) -> list[int]:
        return trie.allowed_one(states.row(input_ids[1:].detach().cpu().numpy()))

    return allowed


def constrained_logits_processor(trie: PathTrie):
    """A LogitsProcessor for `generate(logits_processor=LogitsProcessorList([...]))` that sets
    every token the trie does not allow to -inf. Where a row's allowed tokens all score -inf
    already, they are set to 0, so the constraint still holds (as transformers' own does)."""
    import torch
    from transformers import LogitsProcessor

    class PathConstrainedLogitsProcessor(LogitsProcessor):
        def __init__(self):
            self.states = IncrementalStates(trie)

        def __call__(self, input_ids, scores):
            rows, cols = trie.allowed_pairs(self.states.rows(input_ids[:, 1:].detach().cpu().numpy()))
            if cols.max() >= scores.shape[-1]:
                raise ValueError(f"the trie allows token {cols.max()} but the model scores {scores.shape[-1]} tokens")
            mask = torch.full_like(scores, -float("inf"))
            mask[torch.from_numpy(rows).to(scores.device), torch.from_numpy(cols).to(scores.device)] = 0
            constrained = scores + mask
            stuck = constrained.amax(dim=-1, keepdim=True).isneginf()
            return torch.where(stuck, mask, constrained)

    return PathConstrainedLogitsProcessor()
