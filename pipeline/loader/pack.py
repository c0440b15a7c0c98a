"""Cut a stream of documents into training windows of seq_len + 1 tokens.

`pack` concatenates documents (an EOS between them, unless a document already ends with
one) and cuts windows with stride seq_len, so consecutive windows share one token: every
token after the first is a label exactly once and no token is wasted; only the final
window of a consumer's epoch is padded. `pad` keeps one document per window (a long
document takes several windows) and pads the rest. Position ids restart at 0 at each window
start and at each document start, which is what per-document attention masking needs; they
are computed only when asked for (the compact batch layout sends the starts as cu_seqlens).
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
    """n windows as (n, seq_len) matrices (where documents and padding start: `starts`), and the
    cursor after each one."""

    inputs: np.ndarray
    labels: np.ndarray
    starts: np.ndarray
    next_doc: np.ndarray
    next_tok: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    def rows(self, start: int, stop: int) -> "Windows":
        """Windows [start, stop), as views."""
        return Windows(*(getattr(self, f)[start:stop] for f in Windows.__dataclass_fields__))

    def position_ids(self) -> np.ndarray:
        return position_ids(self.starts)


def position_ids(starts: np.ndarray) -> np.ndarray:
    """Position of each token in its document, restarting at every True and at column 0."""
    n, width = starts.shape
    out = np.empty((n, width), dtype=np.int64)
    out[:] = np.arange(width)  # most windows hold no document start (documents average ~3 windows)
    rows = np.flatnonzero(starts[:, 1:].any(axis=1))
    if len(rows):
        out[rows] = _segment_positions(starts[rows])
    return out


def _segment_positions(starts: np.ndarray) -> np.ndarray:
    """position_ids for windows that do hold document starts: index minus its segment's start."""
    n, width = starts.shape
    resets = np.union1d(np.flatnonzero(starts), np.arange(0, n * width, width))
    lengths = np.diff(resets, append=n * width)
    return (np.arange(n * width, dtype=np.int64) - np.repeat(resets, lengths)).reshape(n, width)


def _cut(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The full windows of `tokens`: count, inputs, labels and starts (views)."""
    n = (len(tokens) - 1) // seq_len if len(tokens) > seq_len else 0
    inputs = tokens[:n * seq_len].reshape(n, seq_len)
    labels = tokens[1:n * seq_len + 1].reshape(n, seq_len)
    return n, inputs, labels, starts[:n * seq_len].reshape(n, seq_len)


def _padded(tokens: np.ndarray, starts: np.ndarray, seq_len: int, pad_id: int) -> tuple[np.ndarray, ...]:
    """One window from fewer than seq_len + 1 tokens; padding labels are IGNORE_INDEX."""
    k = len(tokens) - 1
    inputs = np.full((1, seq_len), pad_id, dtype=tokens.dtype)
    labels = np.full((1, seq_len), IGNORE_INDEX, dtype=tokens.dtype)
    flags = np.zeros((1, seq_len), dtype=bool)
    inputs[0, :k], labels[0, :k], flags[0, :k] = tokens[:k], tokens[1:], starts[:k]
    flags[0, k:k + 1] = True  # padding is its own segment: no real token attends to it
    return inputs, labels, flags


class Packer:
    """Stateful cutter for one consumer's stream; feed it blocks of documents in order.
    Tokens come out as `dtype` (int32 halves the memory traffic where ids fit)."""

    def __init__(self, seq_len: int, mode: str, eos_id: int | None, pad_id: int, drop_last: bool,
                 dtype: type = np.int64) -> None:
        self.seq_len, self.mode, self.eos_id = seq_len, mode, eos_id
        self.pad_id, self.drop_last, self.dtype = pad_id, drop_last, dtype
        self._carry = np.empty(0, dtype=dtype)
        self._starts = np.empty(0, dtype=bool)
        self._seg = np.empty((3, 0), dtype=np.int64)  # rows: offset in carry, document, token offset
        self._eos = np.array([0 if eos_id is None else eos_id], dtype=dtype)

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
            return _empty(self.seq_len, self.dtype)
        inputs, labels, flags = _padded(tokens, starts, self.seq_len, self.pad_id)
        return Windows(inputs, labels, flags, np.array([end_doc]), np.array([0]))

    def _feed_pack(self, docs: list[np.ndarray], first_doc: int, skip: int) -> Windows:
        arrays, lengths = self._separated(docs, skip)
        offsets = len(self._carry) + np.cumsum(lengths) - lengths
        seg = np.stack([offsets, first_doc + np.arange(len(docs)), np.zeros(len(docs), np.int64)])
        seg[2, :1] = skip
        tokens = np.concatenate([self._carry, *arrays], dtype=self.dtype)
        starts = np.zeros(len(tokens), dtype=bool)
        starts[:len(self._carry)] = self._starts
        starts[offsets[(seg[2] == 0) & (lengths > 0)]] = True
        seg = np.concatenate([self._seg, seg], axis=1)
        n, inputs, labels, flags = _cut(tokens, starts, self.seq_len)
        nxt = (np.arange(n, dtype=np.int64) + 1) * self.seq_len
        j = np.searchsorted(seg[0], nxt, side="right") - 1
        out = Windows(inputs, labels, flags, seg[1, j], seg[2, j] + nxt - seg[0, j])
        self._keep(tokens, starts, seg, n * self.seq_len)
        return out

    def _separated(self, docs: list[np.ndarray], skip: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Arrays to concatenate (documents and EOS) and each document's length with its EOS."""
        arrays, lengths = [], []
        for doc in docs:
            need = self.eos_id is not None and (not len(doc) or int(doc[-1]) != self.eos_id)
            arrays.extend((doc, self._eos) if need else (doc,))
            lengths.append(len(doc) + need)
        if docs and skip:  # resuming inside the first document
            head = 1 + (lengths[0] > len(docs[0]))
            arrays[:head] = [np.concatenate(arrays[:head])[skip:]]
            lengths[0] -= skip
        return arrays, np.array(lengths, dtype=np.int64)

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
            tokens = np.concatenate(arrays, dtype=self.dtype)
            parts.append(self._doc_windows(tokens, first_doc + i, skip if i == 0 else 0))
        return _concat(parts, self.seq_len, self.dtype)

    def _doc_windows(self, tokens: np.ndarray, doc: int, skip: int) -> Windows:
        """The windows of one document alone: full ones, then a padded one for the rest."""
        starts = np.zeros(len(tokens), dtype=bool)
        starts[:1] = skip == 0
        n, inputs, labels, flags = _cut(tokens, starts, self.seq_len)
        rest = n * self.seq_len
        if len(tokens) - rest >= 2:
            tail = _padded(tokens[rest:], starts[rest:], self.seq_len, self.pad_id)
            inputs, labels, flags = (np.concatenate([a, b]) for a, b in zip((inputs, labels, flags), tail))
        nxt = skip + (np.arange(len(inputs), dtype=np.int64) + 1) * self.seq_len
        done = nxt >= skip + len(tokens) - 1
        return Windows(inputs, labels, flags, np.where(done, doc + 1, doc), np.where(done, 0, nxt))


def _concat(parts: list[Windows], seq_len: int, dtype: type) -> Windows:
    if not parts:
        return _empty(seq_len, dtype)
    return Windows(*(np.concatenate([getattr(p, f) for p in parts]) for f in Windows.__dataclass_fields__))


def _empty(seq_len: int, dtype: type) -> Windows:
    m = np.empty((0, seq_len), dtype=dtype)
    return Windows(m, m, np.empty((0, seq_len), dtype=bool), np.empty(0, np.int64), np.empty(0, np.int64))
