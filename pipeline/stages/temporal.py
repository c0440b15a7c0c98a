"""Video token merging: drop a frame's patch tokens that did not change since that patch was last kept.

Each patch is compared with its value in the last frame where it was kept (not merely the
previous frame), so slow drift still triggers a new token once it exceeds the threshold.
`threshold: 0` keeps only changed ids; above 0 a patch is dropped while its code embedding is
within `threshold` (Euclidean) of the reference. The first frame is kept whole.
"""
from __future__ import annotations

import math

import numpy as np

from pipeline.spec import TemporalSpec
from pipeline.stages.base import GridStage


class TemporalMerge(GridStage):
    """The `temporal` stage on video rows with shape [frames, rows, cols]."""

    kind = "temporal"
    spec: TemporalSpec

    def _keep_row(self, tokens: np.ndarray, positions: np.ndarray, shape: list[int]) -> np.ndarray:
        if len(shape) < 2:  # not a frame grid: nothing to compare across frames
            return np.ones(len(tokens), bool)
        tokens = tokens.astype(np.int64)
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
