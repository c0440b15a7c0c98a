"""A rank's share of a global batch as tensors, so that a training step costs one yield, not B.

Through DataLoader workers the cost is per tensor and per byte sent between processes
(about 0.3 ms a tensor, plus a copy into shared memory), so a batch should be few, compact
tensors. Two layouts:

- `windows`: `input_ids`, `labels`, `position_ids`, int64 (B, seq_len) (24 bytes a token).
- `compact`: `tokens`, int32 (B, seq_len + 1), and `cu_seqlens`, int32 (segments + 1,)
  of the flattened batch (about 4 bytes a token). `tokens[:, 1:]` are the labels (-100 is
  padding), `tokens[:, :-1]` the inputs; `loader.expand_compact` rebuilds the windows layout.

A batch that a DataLoader worker sends owns its arrays: inputs and labels are two views of one
gathered token range, which would otherwise go to shared memory twice.
"""
from __future__ import annotations

import numpy as np

from pipeline.loader.pack import Windows

LAYOUTS = ("windows", "compact")


def arrays(w: Windows, layout: str, owned: bool) -> dict[str, np.ndarray]:
    """The batch of windows `w` in `layout` (new arrays if `owned`)."""
    if layout == "compact":
        return compact(w)
    copy = np.ascontiguousarray if not owned else np.array
    return {"input_ids": copy(w.inputs), "labels": copy(w.labels), "position_ids": w.position_ids()}


def compact(w: Windows) -> dict[str, np.ndarray]:
    """The compact layout: one int32 token row per window, and cu_seqlens of the whole batch."""
    n, seq_len = w.inputs.shape
    tokens = np.empty((n, seq_len + 1), dtype=np.int32)
    # the first input, then the labels: a padded window keeps -100 after its last real token
    tokens[:, 0] = w.inputs[:, 0]
    tokens[:, 1:] = w.labels
    # a segment starts at every window start and at every document (or padding) start in it
    cu = np.union1d(np.flatnonzero(w.starts), np.arange(0, n * seq_len + 1, seq_len)).astype(np.int32)
    return {"tokens": tokens, "cu_seqlens": cu}
