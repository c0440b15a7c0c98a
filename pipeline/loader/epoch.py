"""One epoch's global window order over one generation of shards, read by position.

Position g of the epoch is found without reading what comes before it: the shards' plans
(pipeline.loader.plan) give each round's window count, the round's merge gives the lane (shard)
and the window in it, the shard's block counts give the block and the block's documents the
tokens. Rounds are counted from an anchor (round, windows before it) so that a resume needs
the plans of the rounds from its position on only; the anchor travels in the loader state.
A round opens all its shards when it starts (local ones are memory maps, so a shard deleted
afterwards still reads to the end of the round). Memory holds the shards of one round plus one,
one block of document views per shard, and the open rounds' merges (12 bytes a window: ~12 MB
for 8 shards of 120k windows).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from pipeline.loader.cache import ShardCache
from pipeline.loader.index import ShardData
from pipeline.loader.pack import Windows, concat, cut, doc_window, empty
from pipeline.loader.plan import Packing, PlanBook, ShardPlan
from pipeline.loader.split import Order, rank_in_order


class _Block:
    """One block's documents in reading order, their sizes with EOS and the running offsets."""

    def __init__(self, docs: list[np.ndarray], packing: Packing) -> None:
        self.docs = docs
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        last = np.array([int(d[-1]) if len(d) else 0 for d in docs], dtype=np.int64)
        self.sizes = packing.sizes(lengths, last)
        per_doc = self.sizes if packing.mode == "pack" else packing.doc_windows(self.sizes)
        self.offsets = np.concatenate([[0], np.cumsum(per_doc)])
        self.eos = np.array([0 if packing.eos_id is None else packing.eos_id], dtype=packing.dtype)

    def doc(self, j: int) -> np.ndarray:
        """Document j with its EOS, as the packed stream holds it."""
        d = self.docs[j]
        return np.concatenate([d, self.eos]) if self.sizes[j] > len(d) else d


class Lane:
    """One shard in one epoch: its documents in the epoch's order, and windows cut from them."""

    def __init__(self, index: int, plan: ShardPlan, packing: Packing, order: Order, cache: ShardCache) -> None:
        self.index, self.plan, self.packing, self.order, self.cache = index, plan, packing, order, cache
        self.block_order = order.blocks(plan.n_blocks, index)
        self.block_offsets = np.concatenate([[0], np.cumsum(plan.per_block[self.block_order])])
        self._blocks: OrderedDict[int, _Block] = OrderedDict()

    def _block(self, k: int) -> _Block:
        """The k-th block in reading order (the two most recent are kept)."""
        if k not in self._blocks:
            b = int(self.block_order[k])
            start, stop = self.plan.rows(b)
            docs = self.packing.docs(self._data(), start, stop)
            self._blocks[k] = _Block([docs[i] for i in self.order.docs(stop - start, self.index, b).tolist()],
                                     self.packing)
            while len(self._blocks) > 2:
                self._blocks.popitem(last=False)
        return self._blocks[k]

    def _data(self) -> ShardData:
        return self.cache.get(self.index)

    def read(self, m: int, count: int) -> Windows:
        """Windows m .. m + count - 1 of this shard (all exist)."""
        p = self.packing
        if p.mode == "pad":
            return concat([self._doc_window(i) for i in range(m, m + count)], p.seq_len, p.dtype)
        total = int(self.block_offsets[-1])
        tokens, starts = self._gather(m * p.seq_len, min((m + count) * p.seq_len + 1, total))
        return cut(tokens, starts, count, p.seq_len, p.pad_id)

    def _gather(self, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens [t0, t1) of the packed stream, and True where a document starts."""
        parts, start_at, size = [], [], 0
        k = int(np.searchsorted(self.block_offsets, t0, side="right")) - 1
        while t0 < t1:
            blk, base = self._block(k), int(self.block_offsets[k])
            lo, hi = t0 - base, min(t1, int(self.block_offsets[k + 1])) - base
            j = int(np.searchsorted(blk.offsets, lo, side="right")) - 1
            while lo < hi:
                a, z = lo - int(blk.offsets[j]), min(hi - int(blk.offsets[j]), int(blk.sizes[j]))
                if a == 0 and z > 0:
                    start_at.append(size)
                doc = blk.docs[j]
                parts.append(doc[a:min(z, len(doc))])
                if z > len(doc):  # the EOS appended to this document
                    parts.append(blk.eos)
                size, lo, j = size + z - a, lo + z - a, j + 1
            t0, k = base + hi, k + 1
        tokens = np.concatenate(parts, dtype=self.packing.dtype) if parts else np.zeros(0, self.packing.dtype)
        starts = np.zeros(len(tokens), dtype=bool)
        starts[start_at] = True
        return tokens, starts

    def _doc_window(self, m: int) -> Windows:
        k = int(np.searchsorted(self.block_offsets, m, side="right")) - 1
        blk = self._block(k)
        local = m - int(self.block_offsets[k])
        j = int(np.searchsorted(blk.offsets, local, side="right")) - 1
        return doc_window(blk.doc(j).astype(self.packing.dtype), local - int(blk.offsets[j]),
                          self.packing.seq_len, self.packing.pad_id)


class Round:
    """`interleave` consecutive shards of the epoch's shard order, their windows randomly merged."""

    def __init__(self, number: int, lanes: list[Lane], order: Order) -> None:
        self.number, self.lanes = number, lanes
        self.lane_of = order.merge([lane.plan.n_windows for lane in lanes], number)
        self.index_in = rank_in_order(self.lane_of, len(lanes))

    def __len__(self) -> int:
        return len(self.lane_of)

    def read(self, offset: int, count: int, packing: Packing) -> Windows:
        """Windows offset .. offset + count - 1 of the round, in merge order."""
        lanes, idx = self.lane_of[offset:offset + count], self.index_in[offset:offset + count]
        out = empty(count, packing.seq_len, packing.pad_id, packing.dtype)
        for lane in np.unique(lanes).tolist():
            where = np.flatnonzero(lanes == lane)
            got = self.lanes[lane].read(int(idx[where[0]]), len(where))  # a lane's windows here are consecutive
            out.inputs[where], out.labels[where], out.starts[where] = got.inputs, got.labels, got.starts
        return out


class Epoch:
    """The windows of one epoch in global order; positions count from 0 at the epoch's start."""

    def __init__(self, shards: tuple, book: PlanBook, cache: ShardCache, order: Order, interleave: int,
                 anchor: tuple[int, int] = (0, 0)) -> None:
        self.shards, self.book, self.cache, self.order, self.interleave = shards, book, cache, order, interleave
        self.shard_order = order.shards(len(shards))
        self.n_rounds = math.ceil(len(shards) / interleave)
        self.first_round = anchor[0]
        self._starts = [anchor[1]]  # windows before round first_round + i
        self._rounds: OrderedDict[int, Round] = OrderedDict()

    def _round(self, r: int) -> Round:
        if r not in self._rounds:
            members = self.shard_order[r * self.interleave:(r + 1) * self.interleave].tolist()
            for i in members:  # opened (local: memory-mapped) now, so a shard deleted later still reads
                self.cache.get(i)
            self.cache.prefetch(self.shard_order[(r + 1) * self.interleave:(r + 2) * self.interleave].tolist())
            lanes = [Lane(i, self.plan(i), self.book.packing, self.order, self.cache) for i in members]
            self._rounds[r] = Round(r, lanes, self.order)
            while len(self._rounds) > 2:
                self._rounds.popitem(last=False)
        return self._rounds[r]

    def plan(self, i: int) -> ShardPlan:
        return self.book.get(self.shards[i].name, lambda: self.cache.get(i))

    def _round_size(self, r: int) -> int:
        members = self.shard_order[r * self.interleave:(r + 1) * self.interleave].tolist()
        return sum(self.plan(i).n_windows for i in members)

    def _extend(self) -> bool:
        """Count one more round; False at the epoch's end."""
        r = self.first_round + len(self._starts) - 1
        if r >= self.n_rounds:
            return False
        self._starts.append(self._starts[-1] + self._round_size(r))
        return True

    def locate(self, g: int) -> tuple[int, int] | None:
        """(round, offset in it) of position g, or None past the epoch's end."""
        if g < self._starts[0]:
            raise ValueError(f"position {g} is before this epoch's anchor ({self._starts[0]} windows)")
        while g >= self._starts[-1]:
            if not self._extend():
                return None
        i = int(np.searchsorted(self._starts, g, side="right")) - 1
        return self.first_round + i, g - self._starts[i]

    def exists(self, g: int) -> bool:
        return self.locate(g) is not None

    def anchor(self, g: int) -> tuple[int, int]:
        """The anchor to save for a resume at g: the round holding g (the end when g is past it)."""
        where = self.locate(g)
        r = where[0] if where is not None else self.first_round + len(self._starts) - 1
        return r, self._starts[r - self.first_round]

    def size(self) -> int:
        """Windows in the epoch (counts every round left)."""
        while self._extend():
            pass
        return self._starts[-1]

    def read(self, g: int, count: int) -> Windows:
        """Windows g .. g + count - 1; any past the epoch's end come back as padding only."""
        packing, parts = self.book.packing, []
        while count > 0:
            where = self.locate(g)
            if where is None:
                parts.append(empty(count, packing.seq_len, packing.pad_id, packing.dtype))
                break
            r, offset = where
            rnd = self._round(r)
            n = min(count, len(rnd) - offset)
            parts.append(rnd.read(offset, n, packing))
            g, count = g + n, count - n
        return concat(parts, packing.seq_len, packing.dtype)
