"""How many windows each shard gives, without packing it: the counts that let any window be found by position.

A shard's rows are cut into fixed blocks of `block` documents (the shuffle unit). For each block
the plan holds one number: its tokens after EOS insertion (pack) or its windows (pad). Both are
independent of the order of documents inside the block, so one plan serves every seed and epoch.
It costs one pass over the shard's offsets and last tokens (not its tokens), 8 bytes per block.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.loader.index import ShardData

MODES = ("pack", "pad")


@dataclass(frozen=True)
class Packing:
    """What decides the windows: seq_len, mode, the EOS rule, the block size, dynamic expansion."""

    seq_len: int
    mode: str
    eos_id: int | None
    pad_id: int
    drop_last: bool
    expand_dynamic: bool
    block: int
    dtype: Any = np.int64

    def sizes(self, lengths: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Each document's tokens once an EOS is appended where it does not end with one."""
        if self.eos_id is None:
            return lengths.astype(np.int64)
        return lengths + ((lengths == 0) | (last != self.eos_id))

    def doc_windows(self, sizes: np.ndarray) -> np.ndarray:
        """pad mode: windows of each document (a window needs two tokens: one input, one label)."""
        return np.where(sizes >= 2, -(-(sizes - 1) // self.seq_len), 0)

    def shard_windows(self, tokens: int) -> int:
        """pack mode: windows of a shard of `tokens` tokens: full ones, then a padded one for a rest of >= 2."""
        full = (tokens - 1) // self.seq_len if tokens > self.seq_len else 0
        return full + int(not self.drop_last and tokens - full * self.seq_len >= 2)

    def docs(self, data: ShardData, start: int, stop: int) -> list[np.ndarray]:
        return data.expanded(start, stop) if self.expand_dynamic else data.docs(start, stop)


@dataclass(frozen=True)
class ShardPlan:
    """Per fixed block of one shard: tokens (pack) or windows (pad); and the shard's window count."""

    n_rows: int
    block: int
    per_block: np.ndarray
    n_windows: int

    @property
    def n_blocks(self) -> int:
        return len(self.per_block)

    def rows(self, b: int) -> tuple[int, int]:
        return b * self.block, min((b + 1) * self.block, self.n_rows)


def plan_shard(data: ShardData, packing: Packing) -> ShardPlan:
    """Count one opened shard: lengths from its offsets (expanded documents when expand_dynamic)."""
    if packing.expand_dynamic and data.dynamic is not None:
        docs = data.expanded(0, data.ref.n_samples)
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        last = np.array([int(d[-1]) if len(d) else 0 for d in docs], dtype=np.int64)
    else:
        lengths, last = data.lengths()
    sizes = packing.sizes(lengths, last)
    per_doc = sizes if packing.mode == "pack" else packing.doc_windows(sizes)
    starts = np.arange(0, len(per_doc), packing.block)
    per_block = np.add.reduceat(per_doc, starts) if len(per_doc) else np.zeros(0, np.int64)
    total = int(per_block.sum())
    n_windows = packing.shard_windows(total) if packing.mode == "pack" else total
    return ShardPlan(len(per_doc), packing.block, per_block.astype(np.int64), n_windows)


class PlanBook:
    """Plans by shard name, computed once per process (small: they travel to DataLoader workers)."""

    def __init__(self, packing: Packing) -> None:
        self.packing = packing
        self._plans: dict[str, ShardPlan] = {}

    def get(self, name: str, open_data: Any) -> ShardPlan:
        """The plan of shard `name`; `open_data()` opens it when the plan is not known yet."""
        plan = self._plans.get(name)
        if plan is None:
            plan = self._plans[name] = plan_shard(open_data(), self.packing)
        return plan
