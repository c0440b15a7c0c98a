"""Generations of a dataset that a job is still writing: its committed shards, in commit order.

A shard is committed when its ledger entry exists (pipeline.dataset.read: DatasetFolder.ledger()),
and the entry records when its unit finished (`run.finished`). A generation is every committed
shard with the index's tokenizer whose files are present at their recorded sizes, ordered by
(finished, shard name), up to a cutoff: the newest commit at least `settle_s` old when the
generation is taken, so that a commit still in flight cannot appear later with an earlier
time. It is identified by (cutoff, shards, digest of the names and row counts): two trainers
that hold the same generation read the same shards in the same order, and a resume rebuilds it
from the ledger. A rerun that rewrites a unit gives it a new shard (another name, a later
commit): the entry of the old one is gone, so a generation that held it cannot be rebuilt.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from pipeline.dataset.read import DatasetFolder, ShardRef
from pipeline.dataset.records import DatasetIndex, LedgerEntry
from pipeline.loader.index import LOADER_FORMATS


@dataclass(frozen=True)
class Generation:
    """Which committed shards a follower reads: everything committed up to `cutoff` (a ledger time)."""

    cutoff: float
    shards: int
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {"cutoff": self.cutoff, "shards": self.shards, "digest": self.digest}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Generation":
        return cls(float(data["cutoff"]), int(data["shards"]), str(data["digest"]))


def digest(shards: tuple[ShardRef, ...]) -> str:
    return hashlib.sha256("\n".join(f"{s.name}:{s.n_samples}" for s in shards).encode()).hexdigest()[:16]


def _committed(folder: DatasetFolder, record: DatasetIndex) -> list[tuple[float, ShardRef]]:
    """(commit time, shard) of every usable committed shard, in commit order."""
    sizes = folder.shard_sizes()
    out = []
    for entry in folder.ledger().entries.values():
        ref = folder.shard_ref(entry, LOADER_FORMATS)
        if ref is not None and _usable(entry, record, sizes):
            out.append((entry.run.finished, ref))
    return sorted(out, key=lambda item: (item[0], item[1].name))


def _usable(entry: LedgerEntry, record: DatasetIndex, sizes: dict[str, int]) -> bool:
    return (entry.tokenizer_fingerprint == record.tokenizer.fingerprint
            and all(sizes.get(f.path) == f.size for f in entry.files.values()))


def latest(folder: DatasetFolder, record: DatasetIndex, settle_s: float,
           now: float | None = None) -> tuple[Generation, tuple[ShardRef, ...]]:
    """The newest generation: shards committed at least settle_s before `now`."""
    limit = (time.time() if now is None else now) - settle_s
    ready = [(t, ref) for t, ref in _committed(folder, record) if t <= limit]
    shards = tuple(ref for _, ref in ready)
    return Generation(ready[-1][0] if ready else 0.0, len(shards), digest(shards)), shards


def rebuild(folder: DatasetFolder, record: DatasetIndex, generation: Generation) -> tuple[ShardRef, ...] | None:
    """The shards of `generation` as the ledger holds them now, or None when one was replaced or removed."""
    shards = tuple(ref for t, ref in _committed(folder, record) if t <= generation.cutoff)
    if len(shards) != generation.shards or digest(shards) != generation.digest:
        return None
    return shards
