"""The ledger read back as untrusted input: crafted entries are named, redone, and never steer a delete."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.dataset import layout
from pipeline.dataset.read import DatasetFolder
from pipeline.ledger import Ledger
from pipeline.storage import Storage
from tests.dataset.helpers import Committed


def _entry_file(c: Committed, i: int = 0) -> Path:
    return c.out / layout.ledger_file(c.units[i].id)


def _edit(c: Committed, change, i: int = 0) -> dict:
    path = _entry_file(c, i)
    entry = json.loads(path.read_text())
    change(entry)
    path.write_text(json.dumps(entry))
    return entry


def _files_outside(c: Committed) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in c.outside.parent.rglob("*")
            if p.is_file() and c.out not in p.parents}


def test_a_real_entry_parses_and_names_only_its_own_files(committed: Committed) -> None:
    scan = DatasetFolder(str(committed.out)).ledger()
    assert not scan.problems and set(scan.entries) == {u.id for u in committed.units}
    for unit in committed.units:
        entry = scan.entries[unit.id]
        assert entry.shard == unit.shard_name
        assert {fmt: f.path for fmt, f in entry.files.items()} == {
            "arrow": f"shards/{unit.shard_name}.arrow", "webdataset": f"shards/{unit.shard_name}.tar"}


CRAFTED = {
    "dot-dot path": lambda e: e["files"]["arrow"].update(path="../precious.txt"),
    "absolute path": lambda e: e["files"]["arrow"].update(path="/etc/hostname"),
    "other folder": lambda e: e["files"]["arrow"].update(path="_ledger/" + e["unit"] + ".json"),
    "dot-dot unit": lambda e: e.update(unit="../precious"),
    "count is text": lambda e: e.update(n_samples="many"),
    "negative count": lambda e: e.update(n_tokens=-1),
    "missing n_samples": lambda e: e.pop("n_samples"),
    "files is a list": lambda e: e.update(files=[1]),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_entry_is_named_and_its_unit_redone(committed: Committed, name: str) -> None:
    _edit(committed, CRAFTED[name])
    before = _files_outside(committed)
    ledger = Ledger(Storage(str(committed.out)))
    scan = ledger.scan()
    rel = layout.ledger_file(committed.units[0].id)
    assert list(scan.problems) == [rel] and scan.problems[rel].startswith(rel + ": ")
    assert "\n" not in scan.problems[rel]
    todo, redo = ledger.split_plan(committed.units, committed.spec.spec_hash(), ["arrow", "webdataset"])
    assert [u.id for u in todo] == [committed.units[0].id]
    assert redo[committed.units[0].id].startswith("ledger entry invalid")
    # cleanup as a run does it, with the crafted unit no longer planned: nothing outside is touched
    ledger.remove_stale(committed.units[1:], scan.entries)
    ledger.remove_invalid_entries(committed.units[1:], scan.problems)
    ledger.remove_orphans({k: v for k, v in scan.entries.items() if k != committed.units[0].id})
    assert _files_outside(committed) == before
    assert not _entry_file(committed).exists(), "the invalid entry (tokenmill's own name) is removed"
    assert not (committed.out / f"shards/{committed.units[0].shard_name}.arrow").exists()


@pytest.mark.parametrize("content", [b"[1]", b"null", b'{"unit": ', b"", b"\xff\xfe"])
def test_entry_that_is_not_an_object_is_a_problem_not_a_traceback(committed: Committed, content: bytes) -> None:
    _entry_file(committed).write_bytes(content)
    scan = DatasetFolder(str(committed.out)).ledger()
    assert len(scan.problems) == 1 and len(scan.entries) == len(committed.units) - 1


def test_entry_naming_another_units_shard_is_refused(committed: Committed) -> None:
    assert len(committed.units) >= 2
    other = json.loads(_entry_file(committed, 1).read_text())
    _edit(committed, lambda e: e.update(shard=other["shard"], files=other["files"]))
    scan = DatasetFolder(str(committed.out)).ledger()
    problem = scan.problems[layout.ledger_file(committed.units[0].id)]
    assert "not this unit's shard" in problem
    ledger = Ledger(Storage(str(committed.out)))
    ledger.remove_stale([committed.units[1]], scan.entries)
    assert (committed.out / other["files"]["arrow"]["path"]).exists(), "the other unit's shard survives"


def test_entry_under_another_units_file_name_is_refused(committed: Committed) -> None:
    a, b = _entry_file(committed, 0), _entry_file(committed, 1)
    b.write_bytes(a.read_bytes())
    scan = DatasetFolder(str(committed.out)).ledger()
    assert "its file name says otherwise" in scan.problems[layout.ledger_file(committed.units[1].id)]


def test_foreign_files_and_folders_stay_and_are_listed(committed: Committed) -> None:
    shards = committed.out / "shards"
    foreign = {"shards/NOTES.txt": b"mine", f"shards/{committed.units[0].shard_name}.idx": b"energon",
               "shards/.nv-meta/dataset.yaml": b"sample_type: x", "_ledger/README": b"hands off",
               "notes.md": b"# mine", "_errors/keep.csv": b"a,b"}
    for rel, data in foreign.items():
        (committed.out / rel).parent.mkdir(parents=True, exist_ok=True)
        (committed.out / rel).write_bytes(data)
    (shards / f"{committed.units[1].shard_name}.arrow.tmp-{'0' * 32}").write_bytes(b"half written")
    ledger = Ledger(Storage(str(committed.out)))
    scan = ledger.scan()
    assert not scan.problems
    orphans = ledger.remove_orphans(scan.entries)
    assert orphans == [f"shards/{committed.units[1].shard_name}.arrow.tmp-{'0' * 32}"]
    for rel, data in foreign.items():
        assert (committed.out / rel).read_bytes() == data, rel
    listed = DatasetFolder(str(committed.out)).foreign()
    assert listed == sorted(["notes.md", "shards/NOTES.txt", f"shards/{committed.units[0].shard_name}.idx",
                             "shards/.nv-meta", "_ledger/README", "_errors/keep.csv"])


def test_stale_unit_cleanup_removes_exactly_its_files(committed: Committed) -> None:
    ledger = Ledger(Storage(str(committed.out)))
    scan = ledger.scan()
    gone = committed.units[0]
    before = {p for p in committed.out.rglob("*") if p.is_file()}
    assert ledger.remove_stale(committed.units[1:], scan.entries) == [gone.id]
    after = {p for p in committed.out.rglob("*") if p.is_file()}
    assert {p.relative_to(committed.out).as_posix() for p in before - after} <= {
        f"shards/{gone.shard_name}.arrow", f"shards/{gone.shard_name}.tar",
        layout.ledger_file(gone.id), layout.errors_file(gone.id)}
    assert len(before - after) >= 3
