"""Cut a stream of documents into training windows of seq_len + 1 tokens.

`pack` concatenates documents (an EOS between them, unless a document already ends with
one) and cuts windows with stride seq_len, so consecutive windows share one token: every
token after the first is a label exactly once and no token is wasted; only the final
window of a consumer's epoch is padded. `pad` keeps one document per window (a long
document takes several windows) and pads the rest. Position ids restart at 0 at each window
start and at each document start, which is what per-document attention masking needs.
Every window carries the cursor (document, token) where the next window starts: resume
reopens the stream there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = -100
MODES = ("pack", "pad")


@dataclass(frozen=True)
class Windows:
    """n windows as int64 (n, seq_len) matrices, and the cursor after each one."""

    inputs: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    next_doc: np.ndarray
    next_tok: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)


def position_ids(starts: np.ndarray) -> np.ndarray:
    """Position of each token in its document, restarting at every True and at column 0."""
    n, width = starts.shape
    resets = np.union1d(np.flatnonzero(starts), np.arange(0, n * width, width))
    steps = np.ones(n * width, dtype=np.int64)
    steps[resets[:1]] = 0
    steps[resets[1:]] = 1 - np.diff(resets)  # one cumulative sum then counts from 0 after each reset
    return np.cumsum(steps).reshape(n, width)


def _cut(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The full windows of `tokens`: count, inputs, labels and position ids."""
    n = (len(tokens) - 1) // seq_len if len(tokens) > seq_len else 0
    inputs = tokens[:n * seq_len].reshape(n, seq_len)
    labels = tokens[1:n * seq_len + 1].reshape(n, seq_len)
    return n, inputs, labels, position_ids(starts[:n * seq_len].reshape(n, seq_len))


def _padded(tokens: np.ndarray, starts: np.ndarray, seq_len: int, pad_id: int) -> tuple[np.ndarray, ...]:
    """One window from fewer than seq_len + 1 tokens; padding labels are IGNORE_INDEX."""
    k = len(tokens) - 1
    inputs = np.full((1, seq_len), pad_id, dtype=np.int64)
    labels = np.full((1, seq_len), IGNORE_INDEX, dtype=np.int64)
    flags = np.zeros((1, seq_len), dtype=bool)
    inputs[0, :k], labels[0, :k], flags[0, :k] = tokens[:k], tokens[1:], starts[:k]
    flags[0, k:k + 1] = True  # padding is its own segment: no real token attends to it
    return inputs, labels, position_ids(flags)


class Packer:
    """Stateful cutter for one consumer's stream; feed it blocks of documents in order."""

    def __init__(self, seq_len: int, mode: str, eos_id: int | None, pad_id: int, drop_last: bool) -> None:
        self.seq_len, self.mode, self.eos_id = seq_len, mode, eos_id
        self.pad_id, self.drop_last = pad_id, drop_last
        self._carry = np.empty(0, dtype=np.int64)
        self._starts = np.empty(0, dtype=bool)
        self._seg = np.empty((3, 0), dtype=np.int64)  # rows: offset in carry, document, token offset
        self._eos = np.array([0 if eos_id is None else eos_id], dtype=np.int64)

    def feed(self, docs: list[np.ndarray], first_doc: int, skip: int) -> Windows:
        """Windows completed by documents first_doc, first_doc + 1, ... (first one from token `skip`)."""
        if self.mode == "pad":
            return self._feed_pad(docs, first_doc, skip)
        return self._feed_pack(docs, first_doc, skip)

    def finish(self, end_doc: int) -> Windows:
        """The last, padded window of the stream (pack mode), if any labels are left."""
        tokens, starts = self._carry, self._starts
        self._carry, self._starts = tokens[:0], starts[:0]
        if self.mode == "pad" or len(tokens) < 2 or self.drop_last:
            return _empty(self.seq_len)
        inputs, labels, positions = _padded(tokens, starts, self.seq_len, self.pad_id)
        return Windows(inputs, labels, positions, np.array([end_doc]), np.array([0]))

    def _feed_pack(self, docs: list[np.ndarray], first_doc: int, skip: int) -> Windows:
        arrays, lengths = self._separated(docs, skip)
        offsets = len(self._carry) + np.cumsum(lengths) - lengths
        seg = np.stack([offsets, first_doc + np.arange(len(docs)), np.zeros(len(docs), np.int64)])
        seg[2, :1] = skip
        tokens = np.concatenate([self._carry, *arrays], dtype=np.int64)
        starts = np.zeros(len(tokens), dtype=bool)
        starts[:len(self._carry)] = self._starts
        starts[offsets[(seg[2] == 0) & (lengths > 0)]] = True
        seg = np.concatenate([self._seg, seg], axis=1)
        n, inputs, labels, positions = _cut(tokens, starts, self.seq_len)
        nxt = (np.arange(n, dtype=np.int64) + 1) * self.seq_len
        j = np.searchsorted(seg[0], nxt, side="right") - 1
        out = Windows(inputs, labels, positions, seg[1, j], seg[2, j] + nxt - seg[0, j])
        self._keep(tokens, starts, seg, n * self.seq_len)
        return out

    def _separated(self, docs: list[np.ndarray], skip: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Arrays to concatenate (documents and EOS) and each document's length with its EOS."""
        arrays, lengths = [], np.empty(len(docs), dtype=np.int64)
        for i, doc in enumerate(docs):
            need = self.eos_id is not None and (not len(doc) or doc[-1] != self.eos_id)
            if i == 0 and skip:
                doc, need = (np.concatenate([doc, self._eos]) if need else doc)[skip:], False
            arrays.append(doc)
            if need:
                arrays.append(self._eos)
            lengths[i] = len(doc) + need
        return arrays, lengths

    def _keep(self, tokens: np.ndarray, starts: np.ndarray, seg: np.ndarray, cut: int) -> None:
        """Carry the tokens after the last full window (at least the one they share)."""
        j = int(np.searchsorted(seg[0], cut, side="right")) - 1
        seg = seg[:, j:].copy()
        seg[2, 0] += cut - seg[0, 0]
        seg[0] = np.maximum(seg[0] - cut, 0)
        self._carry, self._starts, self._seg = tokens[cut:], starts[cut:], seg

    def _feed_pad(self, docs: list[np.ndarray], first_doc: int, skip: int) -> Windows:
        parts = []
        for i, doc in enumerate(docs):
            arrays, _ = self._separated([doc], skip if i == 0 else 0)
            tokens = np.concatenate(arrays, dtype=np.int64)
            parts.append(self._doc_windows(tokens, first_doc + i, skip if i == 0 else 0))
        return _concat(parts, self.seq_len)

    def _doc_windows(self, tokens: np.ndarray, doc: int, skip: int) -> Windows:
        """The windows of one document alone: full ones, then a padded one for the rest."""
        starts = np.zeros(len(tokens), dtype=bool)
        starts[:1] = skip == 0
        n, inputs, labels, positions = _cut(tokens, starts, self.seq_len)
        rest = n * self.seq_len
        if len(tokens) - rest >= 2:
            tail = _padded(tokens[rest:], starts[rest:], self.seq_len, self.pad_id)
            inputs, labels, positions = (np.concatenate([a, b]) for a, b in zip((inputs, labels, positions), tail))
        nxt = skip + (np.arange(len(inputs), dtype=np.int64) + 1) * self.seq_len
        done = nxt >= skip + len(tokens) - 1
        return Windows(inputs, labels, positions, np.where(done, doc + 1, doc), np.where(done, 0, nxt))


def _concat(parts: list[Windows], seq_len: int) -> Windows:
    if not parts:
        return _empty(seq_len)
    return Windows(*(np.concatenate([getattr(p, f) for p in parts]) for f in Windows.__dataclass_fields__))


def _empty(seq_len: int) -> Windows:
    m = np.empty((0, seq_len), dtype=np.int64)
    return Windows(m, m, m, np.empty(0, np.int64), np.empty(0, np.int64))
