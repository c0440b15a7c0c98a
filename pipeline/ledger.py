"""The commit protocol: ledger entries (one per committed unit), cleanup, and the index built from them.

A shard exists only when its ledger entry does: the entry is written last, atomically,
after the shard files. A rerun skips units whose entry matches the plan (same unit id,
input fingerprint, spec hash and tokenizer, shard files present at their recorded sizes),
which is both resume and nightly incremental processing. Entries are read back as
untrusted records (pipeline.dataset.records): one that fails validation is named in a
warning and its unit is redone; cleanup deletes only tokenmill's own names.
"""
from __future__ import annotations

import logging
from typing import Any

from pipeline.dataset import layout
from pipeline.dataset.read import DatasetFolder, LedgerScan
from pipeline.dataset.records import COUNTS, DatasetIndex, IndexShard, LedgerEntry, Totals
from pipeline.plan import WorkUnit
from pipeline.storage import Storage

log = logging.getLogger(__name__)


class Ledger:
    """Commit records of one output folder."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.folder = DatasetFolder.of(storage)
        self.problems_seen: dict[str, str] = {}  # every invalid entry met by this run's scans, for its summary

    def commit(self, entry: LedgerEntry) -> None:
        """Write a unit's entry: the commit point of its shard."""
        self.storage.write_atomic(layout.ledger_file(entry.unit), entry.to_bytes())

    def scan(self) -> LedgerScan:
        """Valid entries by unit id, and the problems of the others (each logged once, with its file)."""
        scan = self.folder.ledger()
        for rel, problem in scan.problems.items():
            if rel not in self.problems_seen:
                log.warning("ledger entry ignored (its unit is redone if planned): %s", problem)
        self.problems_seen.update(scan.problems)
        return scan

    def entries(self) -> dict[str, LedgerEntry]:
        return self.scan().entries

    def valid(self, entry: LedgerEntry, unit: WorkUnit, spec_hash: str, tokenizer_fingerprint: str | None,
              sizes: dict[str, int], hashes: bool = False) -> str | None:
        """None when the entry commits this unit as planned, else why it must be redone."""
        if entry.fingerprint != unit.fingerprint:
            return "input changed"
        if entry.spec_hash != spec_hash:
            return "spec changed"
        if tokenizer_fingerprint is not None and entry.tokenizer_fingerprint != tokenizer_fingerprint:
            return "tokenizer changed"
        for fmt, info in entry.files.items():
            if sizes.get(info.path) != info.size:
                return f"{fmt} shard {info.path} missing or truncated"
            if hashes and self.folder.sha256(info.path) != info.sha256:
                return f"{fmt} shard {info.path} changed on storage (sha256 differs from the ledger's)"
        return None

    def split_plan(self, units: list[WorkUnit], spec_hash: str, formats: list[str],
                   tokenizer_fingerprint: str | None = None,
                   hashes: bool = False) -> tuple[list[WorkUnit], dict[str, str]]:
        """Units still to run, and for each redone unit with an entry, the reason (`hashes`: read every shard)."""
        scan, sizes = self.scan(), self.folder.shard_sizes()
        invalid = {rel.rsplit("/", 1)[-1].removesuffix(".json"): line for rel, line in scan.problems.items()}
        todo, redo = [], {}
        for unit in units:
            entry = scan.entries.get(unit.id)
            if entry is None:
                reason = f"ledger entry invalid ({invalid[unit.id]})" if unit.id in invalid else "not committed"
            else:
                reason = self.valid(entry, unit, spec_hash, tokenizer_fingerprint, sizes, hashes)
                if reason is None and sorted(entry.files) != sorted(formats):
                    reason = "output formats changed"
            if reason is not None:
                todo.append(unit)
                if entry is not None or unit.id in invalid:
                    redo[unit.id] = reason
        return todo, redo

    def remove_stale(self, units: list[WorkUnit], entries: dict[str, LedgerEntry]) -> list[str]:
        """Delete entries and shards of units no longer in the plan (deleted or changed inputs).

        Paths come from validated entries, so each is shards/<this unit's shard>.<ext>: a
        crafted entry cannot point cleanup at another unit's files or outside the folder.
        """
        keep = {u.id for u in units}
        stale = [unit_id for unit_id in entries if unit_id not in keep]
        for unit_id in stale:
            entry = entries[unit_id]
            for fmt, info in entry.files.items():
                self.storage.remove(layout.check_shard_path(info.path, entry.shard, fmt))
            self.storage.remove(layout.errors_file(layout.check_unit_id(unit_id)))
            self.storage.remove(layout.ledger_file(unit_id))  # last: until it goes, a rerun still sees the unit
        return stale

    def remove_invalid_entries(self, units: list[WorkUnit], problems: dict[str, str]) -> list[str]:
        """Delete ledger files with tokenmill's names whose content failed validation and whose unit is not planned.

        Planned units' invalid entries are overwritten by their new commit; the shard files an
        invalid entry named are never trusted, only cleaned up as orphans if they are tokenmill's.
        """
        planned = {u.id for u in units}
        removed = []
        for rel in problems:  # the run's own scan: read once, not again here
            name = rel.rsplit("/", 1)[-1]
            if layout.owned_ledger_file(name) and name.removesuffix(".json") not in planned:
                self.storage.remove(f"{layout.LEDGER_DIR}/{name}")
                removed.append(rel)
        return removed

    def remove_orphans(self, entries: dict[str, LedgerEntry]) -> list[str]:
        """Delete tokenmill shard files (a tar's .tar.idx with its tar, and temporaries) no live entry names; foreign files stay."""
        named = {p for e in entries.values() for info in e.files.values() for p in (info.path, *layout.derived_files(info.path))}
        orphans = []
        for name, info in self.storage.list_detail(layout.SHARD_DIR).items():
            rel = f"{layout.SHARD_DIR}/{name}"
            if info["type"] == "file" and layout.owned_shard_file(name) and rel not in named:
                self.storage.remove(rel)
                orphans.append(rel)
        return sorted(orphans)


def build_index(entries: dict[str, LedgerEntry], units: list[WorkUnit], header: dict[str, Any],
                sizes: dict[str, int] | None = None) -> DatasetIndex:
    """dataset.json: the committed shards (ledger entries by unit) of the planned units, in plan order.

    With `sizes` (shard files on storage), a shard whose file is missing or truncated is left out.
    """
    def present(e: LedgerEntry) -> bool:
        return sizes is None or all(sizes.get(f.path) == f.size for f in e.files.values())
    shards = [IndexShard.from_entry(entries[u.id]) for u in units
              if u.id in entries and entries[u.id].fingerprint == u.fingerprint and present(entries[u.id])]
    totals = Totals(n_shards=len(shards), **{k: sum(getattr(s, k) for s in shards)
                                             for k in COUNTS})
    return DatasetIndex(format=layout.INDEX_FORMAT, version=layout.INDEX_VERSION, **header, shards=shards, totals=totals, complete=len(shards) == len(units))


def write_index(storage: Storage, index: DatasetIndex) -> None:
    storage.write_atomic(layout.INDEX, index.to_bytes())
