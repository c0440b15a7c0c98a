"""Visual token pruning: keep a diverse subset of each image's (or video frame's) tokens.

After ToDRE: greedy k-center over the codebook embeddings of the tokens (the first centre is
the token farthest from the mean; ties go to the earliest token), so the kept set covers the
image's visual variety rather than its most common patches. Kept tokens stay in grid order and
the `positions` column gives each one's flat index in the original `shape` grid.
"""
from __future__ import annotations

import math

import numpy as np

from pipeline.spec import PruneSpec
from pipeline.stages.base import GridStage


class PruneTokens(GridStage):
    """The `prune` stage: `keep` in (0, 1] is a fraction of each image/frame, above 1 a count."""

    kind = "prune"
    spec: PruneSpec

    def _keep_row(self, tokens: np.ndarray, positions: np.ndarray, shape: list[int]) -> np.ndarray:
        """Per frame (video: shape [frames, rows, cols]) or per image, the tokens to keep."""
        per_frame = math.prod(shape[1:]) if self.ctx.modality == "video" and len(shape) == 3 else math.prod(shape)
        in_grid = (positions < math.prod(shape)) & (tokens < len(self.ctx.codebook))
        keep = ~in_grid  # EOS and ids outside the codebook are always kept
        frame = positions // max(per_frame, 1)
        for f in np.unique(frame[in_grid]):
            idx = np.flatnonzero(in_grid & (frame == f))
            keep[idx[k_center(self.ctx.codebook, tokens[idx], self._budget(len(idx)))]] = True
        return keep

    def _budget(self, n: int) -> int:
        keep = self.spec.keep
        return min(n, max(1, math.ceil(keep * n)) if keep <= 1 else int(keep))


def k_center(codebook: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Indices (sorted) of k tokens chosen by greedy k-center on their code embeddings."""
    if k >= len(ids):
        return np.arange(len(ids))
    codes, first = np.unique(ids, return_index=True)
    order = np.argsort(first)  # distinct codes by first appearance: argmax ties pick the earliest
    codes, first = codes[order], first[order]
    emb = codebook[codes].astype(np.float64)
    sq = (emb ** 2).sum(axis=1)
    score = np.linalg.norm(emb - codebook[ids].astype(np.float64).mean(axis=0), axis=1)
    chosen = []
    for _ in range(min(k, len(codes))):
        c = int(np.argmax(score))
        chosen.append(c)
        dist = np.sqrt(np.maximum(sq - 2 * (emb @ emb[c]) + sq[c], 0))  # one row: memory stays O(U)
        score = dist if len(chosen) == 1 else np.minimum(score, dist)
        score[chosen] = -1.0
    picked = first[chosen]
    if k > len(picked):  # every distinct code is in: fill with the earliest remaining tokens
        rest = np.setdiff1d(np.arange(len(ids)), picked)
        picked = np.concatenate([picked, rest[: k - len(picked)]])
    return np.sort(picked)
