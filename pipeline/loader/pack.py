"""Cut training windows of seq_len + 1 tokens out of a shard's document stream.

`pack` concatenates a shard's documents (an EOS between them, unless a document already ends
with one) and cuts windows with stride seq_len, so consecutive windows share one token: every
token after the first is a label exactly once and none is wasted; only the last window of a
shard is padded (a 1-in-100,000 waste for a 200 M-token shard). `pad` keeps one document per
window (a long document takes several windows) and pads the rest. Position ids restart at 0 at
each window start and at each document start, which is what per-document attention masking
needs; they are computed only when asked for (the compact batch layout sends the starts as
cu_seqlens). Window m of a shard is tokens [m * seq_len, (m + 1) * seq_len + 1) of its stream,
so any run of windows is cut from one gathered token range.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Windows:
    """n windows as (n, seq_len) matrices, and where documents (and padding) start in them."""

    inputs: np.ndarray
    labels: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    def rows(self, start: int, stop: int) -> "Windows":
        return Windows(self.inputs[start:stop], self.labels[start:stop], self.starts[start:stop])

    def take(self, order: np.ndarray) -> "Windows":
        return Windows(self.inputs[order], self.labels[order], self.starts[order])

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


def cut(tokens: np.ndarray, starts: np.ndarray, count: int, seq_len: int, pad_id: int) -> Windows:
    """`count` windows from a token range that begins at a window start: full ones, and a padded
    last one when the range holds fewer than count * seq_len + 1 tokens (a shard's end)."""
    full = min(count, (len(tokens) - 1) // seq_len if len(tokens) > seq_len else 0)
    n = full * seq_len
    w = Windows(tokens[:n].reshape(full, seq_len), tokens[1:n + 1].reshape(full, seq_len),
                starts[:n].reshape(full, seq_len))
    if full == count:
        return w
    assert full == count - 1 and len(tokens) - n >= 2, "the plan promised a padded last window"
    return concat([w, padded(tokens[n:], starts[n:], seq_len, pad_id)], seq_len, tokens.dtype)


def padded(tokens: np.ndarray, starts: np.ndarray, seq_len: int, pad_id: int) -> Windows:
    """One window from 2 to seq_len + 1 tokens; padding labels are IGNORE_INDEX."""
    k = len(tokens) - 1
    inputs = np.full((1, seq_len), pad_id, dtype=tokens.dtype)
    labels = np.full((1, seq_len), IGNORE_INDEX, dtype=tokens.dtype)
    flags = np.zeros((1, seq_len), dtype=bool)
    inputs[0, :k], labels[0, :k], flags[0, :k] = tokens[:k], tokens[1:], starts[:k]
    flags[0, k:k + 1] = True  # padding is its own segment: no real token attends to it
    return Windows(inputs, labels, flags)


def doc_window(tokens: np.ndarray, k: int, seq_len: int, pad_id: int) -> Windows:
    """pad mode: window k of one document (with its EOS), padded when it is the document's last."""
    piece = tokens[k * seq_len:(k + 1) * seq_len + 1]
    starts = np.zeros(len(piece), dtype=bool)
    starts[:1] = k == 0
    if len(piece) == seq_len + 1:
        return Windows(piece[None, :-1], piece[None, 1:], starts[None, :-1])
    return padded(piece, starts, seq_len, pad_id)


def empty(n: int, seq_len: int, pad_id: int, dtype: type) -> Windows:
    """n windows of padding only (labels all IGNORE_INDEX): what fills a padded last global batch."""
    return Windows(np.full((n, seq_len), pad_id, dtype=dtype), np.full((n, seq_len), IGNORE_INDEX, dtype=dtype),
                   np.zeros((n, seq_len), dtype=bool))


def concat(parts: list[Windows], seq_len: int, dtype: type) -> Windows:
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty(0, seq_len, 0, dtype)
    if len(parts) == 1:
        return parts[0]
    return Windows(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("inputs", "labels", "starts")))
