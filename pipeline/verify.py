"""`tokenmill verify OUT`: every shard's size and sha256 against its ledger entry, and the index against the ledger.

A shard whose bytes changed on storage (same size, other content) is found only by its
hash, which costs one read of every shard: `verify` does that read on demand, `run
--verify` does it before deciding what to redo, and the loader checks sizes only (cheap).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.dataset.read import DatasetError, DatasetFolder
from pipeline.dataset.records import LedgerEntry


@dataclass
class Verdict:
    """What differs, one line each; empty lists mean the dataset is what its ledger says."""

    output: str
    shards_checked: int = 0
    bytes_read: int = 0
    shards: list[str] = field(default_factory=list)   # a shard file missing, truncated or changed
    index: list[str] = field(default_factory=list)    # the index disagrees with the ledger
    ledger: list[str] = field(default_factory=list)   # ledger entries that are not valid

    @property
    def ok(self) -> bool:
        return not (self.shards or self.index or self.ledger)


def changed_files(folder: DatasetFolder, entry: LedgerEntry, sizes: dict[str, int], hashes: bool) -> list[str]:
    """One line per file of the entry that is not as committed (missing, other size, other sha256)."""
    out = []
    for fmt, info in sorted(entry.files.items()):
        size = sizes.get(info.path)
        if size is None:
            out.append(f"{info.path}: missing (unit {entry.unit})")
        elif size != info.size:
            out.append(f"{info.path}: {size} bytes, the ledger says {info.size} (unit {entry.unit})")
        elif hashes and folder.sha256(info.path) != info.sha256:
            out.append(f"{info.path}: sha256 differs from the ledger's; its bytes changed (unit {entry.unit})")
    return out


def verify_dataset(out: str, storage_options: dict[str, Any] | None = None) -> Verdict:
    folder = DatasetFolder(out, storage_options)
    verdict = Verdict(output=out)
    scan = folder.ledger()
    verdict.ledger = sorted(scan.problems.values())
    sizes = folder.shard_sizes()
    for entry in scan.sorted():
        verdict.shards += changed_files(folder, entry, sizes, hashes=True)
        verdict.shards_checked += 1
        verdict.bytes_read += sum(f.size for f in entry.files.values())
    try:
        index = folder.index()
    except DatasetError as exc:
        verdict.index.append(str(exc))
        return verdict
    by_shard = {e.shard: e for e in scan.entries.values()}
    for shard in index.shards:
        entry = by_shard.get(shard.name)
        if entry is None:
            verdict.index.append(f"shard {shard.name} is in the index but no ledger entry commits it")
        elif shard.files != entry.files or (shard.n_samples, shard.n_tokens) != (entry.n_samples, entry.n_tokens):
            verdict.index.append(f"shard {shard.name}: the index's files or counts differ from its ledger entry")
    return verdict


def cli_verify(args: argparse.Namespace) -> int:
    """Print what differs (exit 1), or one line saying everything matches (exit 0)."""
    options = json.loads(args.storage_options) if args.storage_options else None
    verdict = verify_dataset(args.out, options)
    if args.json:
        print(json.dumps({**asdict(verdict), "ok": verdict.ok}, indent=1, sort_keys=True))
    elif verdict.ok:
        print(f"ok: {verdict.shards_checked} shards ({verdict.bytes_read:,} bytes) match their ledger entries, "
              "and the index matches the ledger")
    else:
        for kind in ("ledger", "shards", "index"):
            for line in getattr(verdict, kind):
                print(f"{kind}: {line}", file=sys.stdout)
        print("to repair: `tokenmill run JOB.yaml --verify` redoes the units whose shards differ and "
              "rewrites the index", file=sys.stdout)
    return 0 if verdict.ok else 1
