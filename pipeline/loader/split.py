"""The global order's random choices, and who takes which windows of it.

The order of an epoch depends on (dataset, seed, epoch) only: the shards are permuted, then
read in rounds of `interleave` shards whose windows are interleaved by a random merge; inside a
shard its blocks of `shuffle_buffer` documents are permuted, and the documents inside each
block. Every choice is a permutation keyed by the seed, the epoch and where it applies, so any
position can be reopened without replaying the ones before it.

Ranks and DataLoader workers never own data: a global batch is `world_size * batch_size`
consecutive windows of the order; rank r takes the r-th slice of `batch_size` windows, and
DataLoader worker w of a rank produces the global batches w, w + num_workers, ... (the order in
which a DataLoader asks its workers), so what the training loop has consumed is always a prefix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def permutation(n: int, *key: int) -> np.ndarray:
    """A permutation of range(n) that depends only on `key` (stable across runs and machines)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))
    return np.argsort(rng.random(n), kind="stable")


@dataclass(frozen=True)
class Order:
    """The permutations of one epoch (identity everywhere when shuffle is off)."""

    seed: int
    epoch: int
    shuffle: bool

    def shards(self, n: int) -> np.ndarray:
        return permutation(n, self.seed, self.epoch, 0) if self.shuffle else np.arange(n)

    def blocks(self, n: int, shard: int) -> np.ndarray:
        return permutation(n, self.seed, self.epoch, 1, shard) if self.shuffle else np.arange(n)

    def docs(self, n: int, shard: int, block: int) -> np.ndarray:
        return permutation(n, self.seed, self.epoch, 2, shard, block) if self.shuffle else np.arange(n)

    def merge(self, counts: list[int], round_: int) -> np.ndarray:
        """Which lane (shard of the round) each window of the round comes from: a uniform random
        interleaving of the lanes' windows (lane after lane without shuffle)."""
        lanes = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        return lanes[permutation(len(lanes), self.seed, self.epoch, 3, round_)] if self.shuffle else lanes


def rank_in_order(lanes: np.ndarray, n_lanes: int) -> np.ndarray:
    """For each position of a merge, how many windows of the same lane come before it."""
    order = np.argsort(lanes, kind="stable")
    counts = np.bincount(lanes, minlength=n_lanes)
    firsts = np.repeat(np.cumsum(counts) - counts, counts)
    out = np.empty(len(lanes), dtype=np.int64)
    out[order] = np.arange(len(lanes)) - firsts
    return out


@dataclass(frozen=True)
class Consumer:
    """One DataLoader worker of one rank: which global batches it makes and which slice of them."""

    rank: int
    world_size: int
    worker: int
    num_workers: int
    batch_size: int

    @property
    def global_batch(self) -> int:
        return self.world_size * self.batch_size

    def first_window(self, step_start: int) -> int:
        """Global position of this rank's first window in the global batch starting at `step_start`."""
        return step_start + self.rank * self.batch_size
