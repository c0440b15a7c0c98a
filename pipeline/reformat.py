"""Output formats changed between runs: committed units get them from their own shards, not tokenized again.

A unit whose ledger entry matches the plan in everything but the formats has the new formats
written from its Arrow (or Parquet) shard, which is read back and checked against the ledger's
sha256 first; formats no longer asked for leave the entry, and their files are deleted at the
end of the run as orphans. Written this way, each file is byte for byte what a fresh run writes
(tests/test_reformat.py). The unit is redone instead when its shards cannot give the format: a
WebDataset tar with `sink.keep_source` (the original bytes are not in Arrow or Parquet), no
Arrow or Parquet shard to read, or one that no longer matches its ledger entry.
"""
from __future__ import annotations

import hashlib
import io
import logging

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset import layout
from pipeline.dataset.read import DatasetFolder
from pipeline.dataset.records import LedgerEntry
from pipeline.ledger import Ledger
from pipeline.shard import write_shard_files
from pipeline.sinks import files_for

log = logging.getLogger(__name__)

READABLE = ("arrow", "parquet")  # the formats a table is read back from, in this order
FORMATS_CHANGED = "output formats changed"


class CannotReformat(Exception):
    """This unit's committed shards cannot give the formats asked for; it is redone."""


def can_reformat(entry: LedgerEntry, formats: list[str], keep_source: bool) -> bool:
    """Whether the entry's shards can give every format asked for without tokenizing again."""
    new = [f for f in formats if f not in entry.files]
    if not new:
        return True
    if keep_source and "webdataset" in new:
        return False
    return any(f in entry.files for f in READABLE)


def _read_back(folder: DatasetFolder, entry: LedgerEntry) -> pa.Table:
    """The shard's table (schema metadata included), from bytes whose sha256 is the ledger's."""
    fmt = next(f for f in READABLE if f in entry.files)
    info = entry.files[fmt]
    try:
        data = folder.storage.read_bytes(info.path)
    except FileNotFoundError:
        raise CannotReformat(f"{info.path} is missing") from None
    if hashlib.sha256(data).hexdigest() != info.sha256:
        raise CannotReformat(f"{info.path} differs from its ledger entry (sha256)")
    if fmt == "arrow":
        return pa.ipc.open_file(pa.BufferReader(data)).read_all()
    return pq.read_table(io.BytesIO(data))


def reformat(ledger: Ledger, entry: LedgerEntry, formats: list[str]) -> LedgerEntry:
    """Write the formats the entry lacks from its shard, then commit the entry listing exactly `formats`."""
    files = {}
    table = None
    for fmt in formats:
        if fmt in entry.files:
            files[fmt] = entry.files[fmt].to_json()
            continue
        table = table if table is not None else _read_back(ledger.folder, entry)
        written = files_for(fmt)(table, entry.shard)
        files[fmt], _ = write_shard_files(ledger.storage, written, layout.shard_file(entry.shard, fmt))
    updated = LedgerEntry.parse({**entry.to_json(), "files": files}, layout.ledger_file(entry.unit))
    ledger.commit(updated)
    return updated


def reformat_units(ledger: Ledger, entries: dict[str, LedgerEntry], unit_ids: list[str],
                   formats: list[str]) -> tuple[list[str], dict[str, str]]:
    """Reformat each unit's entry; returns the units done and, for the others, why they must be redone."""
    done, failed = [], {}
    for unit_id in unit_ids:
        try:
            reformat(ledger, entries[unit_id], formats)
            done.append(unit_id)
        except CannotReformat as exc:
            failed[unit_id] = f"{FORMATS_CHANGED}, and its shards cannot give them: {exc}"
    if done:
        log.info("%d committed units given the new output formats from their shards (not tokenized again)", len(done))
    return done, failed
