"""Video token merging: drop a frame's patch tokens that did not change since that patch was last kept.

Each patch is compared with its value in the last frame where it was kept (not merely the
previous frame), so slow drift still triggers a new token once it exceeds the threshold.
`threshold: 0` keeps only changed ids; above 0 a patch is dropped while its code embedding is
within `threshold` (Euclidean) of the reference. The first frame is kept whole.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from pipeline.spec import TemporalSpec
from pipeline.stages.base import Stage, flat_tokens, grid_positions, reduction_stats, row_shapes, select_rows


class TemporalMerge(Stage):
    """The `temporal` stage on video rows with shape [frames, rows, cols]."""

    kind = "temporal"
    spec: TemporalSpec

    def __call__(self, table: pa.Table) -> pa.Table:
        tokens, offsets = flat_tokens(table)
        positions = grid_positions(table, offsets)
        keep = np.ones(len(tokens), bool)
        for row, shape in enumerate(row_shapes(table)):
            t0, t1 = offsets[row], offsets[row + 1]
            if len(shape) >= 2:
                keep[t0:t1] = self._keep_row(tokens[t0:t1].astype(np.int64), positions[t0:t1], shape)
        self.stats = reduction_stats(len(tokens), int(keep.sum()))
        return select_rows(table, tokens, positions, offsets, keep)

    def _keep_row(self, tokens: np.ndarray, positions: np.ndarray, shape: list[int]) -> np.ndarray:
        patches = math.prod(shape[1:])
        keep = np.ones(len(tokens), bool)
        ref = np.full(patches, -1, dtype=np.int64)
        in_grid = positions < math.prod(shape)
        frame, patch = positions // patches, positions % patches
        bounds = np.flatnonzero(np.diff(frame[in_grid])) + 1
        for idx in np.split(np.flatnonzero(in_grid), bounds):
            same = self._unchanged(tokens[idx], ref[patch[idx]])
            keep[idx] = ~same
            ref[patch[idx[~same]]] = tokens[idx[~same]]
        return keep

    def _unchanged(self, tokens: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """True where a patch matches its reference (exactly, or within threshold in codebook space)."""
        have = ref >= 0
        if self.spec.threshold == 0:
            return have & (tokens == ref)
        cb = self.ctx.codebook
        valid = have & (tokens < len(cb)) & (ref < len(cb))
        dist = np.full(len(tokens), np.inf)
        dist[valid] = np.linalg.norm(cb[tokens[valid]] - cb[ref[valid]], axis=1)
        return (tokens == ref) & have | (dist <= self.spec.threshold)
