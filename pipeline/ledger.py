"""The ledger (one JSON per committed unit) and the dataset index built from it.

A shard exists only when its ledger entry does: the entry is written last, atomically,
after the shard files. A rerun skips units whose entry matches the plan (same unit id,
input fingerprint and spec hash, shard files present at their recorded sizes), which is
both resume and nightly incremental processing. The index is rewritten from the ledger.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from pipeline.plan import WorkUnit
from pipeline.storage import Storage

log = logging.getLogger(__name__)

LEDGER_DIR = "_ledger"
SHARD_DIR = "shards"
ERROR_DIR = "_errors"
INDEX = "dataset.json"
INDEX_VERSION = 1


class Ledger:
    """Commit records of one output folder."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def commit(self, entry: dict[str, Any]) -> None:
        """Write a unit's entry: the commit point of its shard."""
        data = json.dumps(entry, sort_keys=True, indent=1).encode()
        self.storage.write_atomic(f"{LEDGER_DIR}/{entry['unit']}.json", data)

    def entries(self) -> dict[str, dict[str, Any]]:
        """All committed entries by unit id (unreadable entries are treated as absent)."""
        out = {}
        for name in self.storage.listdir(LEDGER_DIR):
            if not name.endswith(".json"):
                continue
            try:
                entry = json.loads(self.storage.read_bytes(f"{LEDGER_DIR}/{name}"))
                out[entry["unit"]] = entry
            except (ValueError, KeyError, FileNotFoundError) as exc:
                log.warning("ignoring unreadable ledger entry %s: %s", name, exc)
        return out

    def shard_sizes(self) -> dict[str, int]:
        """Sizes of the files in shards/, from one listing (cheap on object stores)."""
        folder = self.storage.path(SHARD_DIR).rstrip("/")
        try:
            infos = self.storage.fs.ls(folder, detail=True, refresh=True)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        inside = [i for i in infos if i["name"].rstrip("/").startswith(folder + "/")]  # `ls` of a file is itself
        return {f"{SHARD_DIR}/{i['name'].rstrip('/').rsplit('/', 1)[-1]}": int(i.get("size") or 0) for i in inside}

    def valid(self, entry: dict[str, Any], unit: WorkUnit, spec_hash: str, sizes: dict[str, int]) -> str | None:
        """None when the entry commits this unit as planned, else why it must be redone."""
        if entry.get("fingerprint") != unit.fingerprint:
            return "input changed"
        if entry.get("spec_hash") != spec_hash:
            return "spec changed"
        for fmt, info in entry.get("files", {}).items():
            if sizes.get(info["path"]) != info["size"]:
                return f"{fmt} shard {info['path']} missing or truncated"
        return None

    def split_plan(self, units: list[WorkUnit], spec_hash: str, formats: list[str]) -> tuple[list[WorkUnit], dict[str, str]]:
        """Units still to run, and for each redone unit with an entry, the reason."""
        entries, sizes = self.entries(), self.shard_sizes()
        todo, redo = [], {}
        for unit in units:
            entry = entries.get(unit.id)
            reason = "not committed" if entry is None else self.valid(entry, unit, spec_hash, sizes)
            if reason is None and sorted(entry.get("files", {})) != sorted(formats):
                reason = "output formats changed"
            if reason is not None:
                todo.append(unit)
                if entry is not None:
                    redo[unit.id] = reason
        return todo, redo

    def remove_stale(self, units: list[WorkUnit], entries: dict[str, dict[str, Any]]) -> list[str]:
        """Delete entries and shards of units no longer in the plan (deleted or changed inputs)."""
        keep = {u.id for u in units}
        stale = [unit_id for unit_id in entries if unit_id not in keep]
        for unit_id in stale:  # shard names hash the unit id, so no planned unit shares these files
            self.storage.remove(f"{LEDGER_DIR}/{unit_id}.json")
            for info in entries[unit_id].get("files", {}).values():
                self.storage.remove(info["path"])
            self.storage.remove(f"{ERROR_DIR}/{unit_id}.parquet")
        return stale

    def remove_orphans(self, entries: dict[str, dict[str, Any]]) -> list[str]:
        """Delete shard files no (live) ledger entry names: superseded shards, crashed half-writes."""
        named = {info["path"] for e in entries.values() for info in e.get("files", {}).values()}
        orphans = [p for p in self.shard_sizes() if p not in named]
        for path in orphans:
            self.storage.remove(path)
        return orphans


def build_index(entries: dict[str, dict[str, Any]], units: list[WorkUnit], header: dict[str, Any]) -> dict[str, Any]:
    """dataset.json: the committed shards (ledger entries by unit) of the planned units, in plan order."""
    shards = []
    for unit in units:
        entry = entries.get(unit.id)
        if entry is None or entry.get("fingerprint") != unit.fingerprint:
            continue
        shards.append({"name": entry["shard"], "unit": unit.id, "files": entry["files"],
                       **{k: entry[k] for k in ("n_samples", "n_tokens", "n_bytes", "n_errors")}})
    totals = {k: sum(s[k] for s in shards) for k in ("n_samples", "n_tokens", "n_bytes", "n_errors")}
    totals["n_shards"] = len(shards)
    return {"format": "tokenmill.dataset", "version": INDEX_VERSION, **header,
            "shards": shards, "totals": totals, "complete": len(shards) == len(units)}


def write_index(storage: Storage, index: dict[str, Any]) -> None:
    storage.write_atomic(INDEX, json.dumps(index, sort_keys=True, indent=1).encode())


def read_index(storage: Storage) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(INDEX))
    except FileNotFoundError:
        return None
