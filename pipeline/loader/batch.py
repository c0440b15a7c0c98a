"""Group packed windows into whole batches, so that a training step costs one yield, not B.

Through DataLoader workers the cost is per tensor and per byte sent between processes
(about 0.3 ms a tensor, plus a copy into shared memory), so a batch should be few, compact
tensors. Two layouts:

- `windows`: `input_ids`, `labels`, `position_ids`, int64 (B, seq_len): what the
  per-window mode gives, stacked (24 bytes a token).
- `compact`: `tokens`, int32 (B, seq_len + 1), and `cu_seqlens`, int32 (segments + 1,)
  of the flattened batch (about 4 bytes a token). `tokens[:, 1:]` are the labels (-100 is
  padding), `tokens[:, :-1]` the inputs; `loader.expand_compact` rebuilds the windows layout.

A batch that a DataLoader worker sends owns its arrays: a view would move its whole base
array (a group of ~256 windows) into shared memory. In process, a windows-layout batch that
lies inside one group is a view (no copy).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from pipeline.loader.pack import Windows

LAYOUTS = ("windows", "compact")


@dataclass(frozen=True)
class Batch:
    """The arrays of one batch and the cursor (document, token) after its last window."""

    arrays: dict[str, np.ndarray]
    next_doc: int
    next_tok: int


class Batcher:
    """Collects windows from the packer and hands out batches of `size` windows, in order."""

    def __init__(self, size: int, layout: str, owned: bool) -> None:
        self.size, self.layout, self.owned = size, layout, owned
        self._parts: list[tuple[Windows, np.ndarray | None]] = []  # with position ids, once per group
        self._count = 0  # windows not yet handed out; they start at row _head of the first part
        self._head = 0

    def add(self, w: Windows) -> Iterator[Batch]:
        """The full batches that `w` completes."""
        if len(w):
            self._parts.append((w, w.position_ids() if self.layout == "windows" else None))
            self._count += len(w)
        while self._count >= self.size:
            yield self._take(self.size)

    def flush(self) -> Iterator[Batch]:
        """The last, smaller batch of a pass, if windows are left."""
        if self._count:
            yield self._take(self._count)

    def _take(self, k: int) -> Batch:
        taken, need = [], k
        while need:
            (w, pos), a = self._parts[0], self._head
            m = min(need, len(w) - a)
            taken.append((w.rows(a, a + m), None if pos is None else pos[a:a + m]))
            self._head, need = a + m, need - m
            if self._head == len(w):
                self._parts.pop(0)
                self._head = 0
        self._count -= k
        last = taken[-1][0]
        arrays = stacked(taken, self.owned) if self.layout == "windows" else compact([w for w, _ in taken])
        return Batch(arrays, int(last.next_doc[-1]), int(last.next_tok[-1]))


def stacked(parts: list[tuple[Windows, np.ndarray]], owned: bool) -> dict[str, np.ndarray]:
    """The windows layout: int64 (B, seq_len) inputs, labels and position ids (new arrays if `owned`)."""
    if len(parts) == 1 and not owned:
        (w, pos), = parts
        return {"input_ids": w.inputs, "labels": w.labels, "position_ids": pos}
    return {"input_ids": np.concatenate([w.inputs for w, _ in parts]),
            "labels": np.concatenate([w.labels for w, _ in parts]),
            "position_ids": np.concatenate([pos for _, pos in parts])}


def compact(parts: list[Windows]) -> dict[str, np.ndarray]:
    """The compact layout: one int32 token row per window, and cu_seqlens of the whole batch."""
    n, seq_len = sum(len(p) for p in parts), parts[0].inputs.shape[1]
    tokens = np.empty((n, seq_len + 1), dtype=np.int32)
    starts, row = [], 0
    for p in parts:
        # the first input, then the labels: a padded window keeps -100 after its last real token
        tokens[row:row + len(p), 0] = p.inputs[:, 0]
        tokens[row:row + len(p), 1:] = p.labels
        starts.append(np.flatnonzero(p.starts) + row * seq_len)
        row += len(p)
    # a segment starts at every window start and at every document (or padding) start in it
    cu = np.union1d(np.concatenate(starts), np.arange(0, n * seq_len + 1, seq_len)).astype(np.int32)
    return {"tokens": tokens, "cu_seqlens": cu}
