"""Who reads what: shards (or row ranges) per consumer, and the shuffled order of its documents.

A consumer is one DataLoader worker of one rank: `consumer = rank * num_workers + worker`
of `world_size * num_workers`. Each epoch the shard order is a permutation drawn from
(seed, epoch); piece i goes to consumer i mod C, so pieces never overlap and none is left
out. With fewer shards than consumers each shard is cut into equal row ranges first.
A consumer's documents are then shuffled inside consecutive blocks of `block` documents,
so the order is a pure function of (seed, epoch, consumer, position) and any position can
be reopened without replaying the ones before it (that is what makes resume exact).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Piece:
    """Rows [start, stop) of shard number `shard` (position in the index)."""

    shard: int
    start: int
    stop: int

    @property
    def n_rows(self) -> int:
        return self.stop - self.start


def permutation(n: int, *key: int) -> np.ndarray:
    """A permutation of range(n) that depends only on `key` (stable across runs)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))
    return np.argsort(rng.random(n), kind="stable")


def epoch_pieces(n_rows: Sequence[int], consumers: int, seed: int, epoch: int, shuffle: bool) -> list[Piece]:
    """All pieces of one epoch in reading order: whole shards, or row ranges when shards are few."""
    order = permutation(len(n_rows), seed, epoch, 0) if shuffle else np.arange(len(n_rows))
    parts = math.ceil(consumers / len(n_rows)) if 0 < len(n_rows) < consumers else 1
    pieces = []
    for s in order.tolist():
        bounds = np.linspace(0, n_rows[s], parts + 1).astype(np.int64).tolist()
        pieces.extend(Piece(s, a, b) for a, b in zip(bounds, bounds[1:]))
    return pieces


def consumer_pieces(pieces: list[Piece], consumer: int, consumers: int) -> list[Piece]:
    """The pieces one consumer reads, in order."""
    return pieces[consumer::consumers]


class Stream:
    """The documents of one consumer, numbered 0..total-1, cut into shuffled blocks."""

    def __init__(self, pieces: list[Piece], block: int, shuffle: bool, key: tuple[int, ...]) -> None:
        self.pieces = pieces
        self.block = block
        self.shuffle = shuffle
        self.key = key
        self._ends = np.cumsum([p.n_rows for p in pieces], dtype=np.int64)
        self.total = int(self._ends[-1]) if pieces else 0

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.total / self.block)

    def block_rows(self, b: int) -> list[Piece]:
        """The row ranges (pieces cut to fit) that hold block b's documents, in stream order."""
        lo, hi = b * self.block, min((b + 1) * self.block, self.total)
        out = []
        first = int(np.searchsorted(self._ends, lo, side="right"))
        for i in range(first, len(self.pieces)):
            piece, begin = self.pieces[i], int(self._ends[i]) - self.pieces[i].n_rows
            a, z = max(lo, begin) - begin, min(hi, int(self._ends[i])) - begin
            if begin >= hi:
                break
            if a < z:
                out.append(Piece(piece.shard, piece.start + a, piece.start + z))
        return out

    def block_order(self, b: int) -> np.ndarray:
        """The order in which block b's documents are read (identity without shuffle)."""
        n = min(self.block, self.total - b * self.block)
        return permutation(n, *self.key, b) if self.shuffle else np.arange(n)

    def shards_after(self, b: int, n: int) -> list[int]:
        """The shards of the next n pieces from block b + 1 on (what to prefetch)."""
        first = int(np.searchsorted(self._ends, (b + 1) * self.block, side="right"))
        return list(dict.fromkeys(p.shard for p in self.pieces[first:first + n]))
