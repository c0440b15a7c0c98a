"""Lineage from the ledger: sample -> shard/row/unit/input, input -> shards, shard -> inputs."""
from __future__ import annotations

import argparse
import json
import shutil

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from pipeline.lineage import NotFound, find_sample, find_source, lineage_cli, shard_inputs
from tests.report.fixtures import make_dataset


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("files"), n_code=15, n_docs=4)


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    """One sample per line, units are byte ranges of the same files: ids are <uri>@<offset>."""
    return make_dataset(tmp_path_factory.mktemp("lines"), n_code=0, n_docs=4, lines=True)


def rows_of(out, shard: str) -> list[str]:
    return ipc.open_file(pa.memory_map(str(out / "shards" / f"{shard}.arrow"))).read_all()["id"].to_pylist()


def test_every_sample_is_found_in_its_shard(files):
    assert len(files.samples) > 10
    for s in files.samples:
        got = find_sample(str(files.out), s["id"])
        assert (got["shard"], got["unit"], got["input"]["uri"]) == (s["shard"], s["unit"], s["source"])
        assert rows_of(files.out, got["shard"])[got["row"]] == s["id"]
        assert got["in_index"] and got["shards_read"] == 1


def test_byte_ranges_pick_the_one_unit(lines):
    per_file = {}
    for s in lines.samples:
        per_file.setdefault(s["source"], set()).add(s["unit"])
    assert max(len(u) for u in per_file.values()) > 1, "the fixture should cut a file into several units"
    for s in lines.samples[::7]:
        got = find_sample(str(lines.out), s["id"])
        assert (got["shard"], got["unit"]) == (s["shard"], s["unit"])
        assert got["input"]["start"] <= int(s["id"].rsplit("@", 1)[1]) < got["input"]["end"]
        assert got["shards_read"] == 1


def test_reads_only_the_shard_that_holds_it(files, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(files.out, out)
    target = files.samples[len(files.samples) // 2]
    others = [p for p in (out / "shards").iterdir() if p.stem != target["shard"]]
    assert others
    for p in others:
        p.write_bytes(b"not an arrow file")
    assert find_sample(str(out), target["id"])["shard"] == target["shard"]


def test_unknown_sample(files):
    with pytest.raises(NotFound, match="no input in the ledger matches it"):
        find_sample(str(files.out), "/nowhere/x.py")
    bad = files.errors[0]  # a quarantined input says so, with its reason
    with pytest.raises(NotFound, match="was quarantined, not tokenized: .*stage"):
        find_sample(str(files.out), bad["uri"] + (bad["member"] or ""))
    known = files.samples[0]["source"]
    with pytest.raises(NotFound, match="not in the shards of its input"):
        find_sample(str(files.out), known + "@999999999")


def test_find_source_lists_the_shards_of_an_input(files):
    for source in {s["source"] for s in files.samples}:
        got = find_source(str(files.out), source)
        assert {g["shard"] for g in got} == {s["shard"] for s in files.samples if s["source"] == source}
        assert all(g["files"]["arrow"].startswith("shards/") for g in got)


def test_find_source_of_a_folder_and_of_a_quarantined_input(files):
    code = [s for s in files.samples if "/corpus/code/" in s["source"]]
    folder = code[0]["source"].split("/corpus/")[0] + "/corpus/code/"
    assert {g["shard"] for g in find_source(str(files.out), folder)} >= {s["shard"] for s in code}
    bad = files.errors[0]
    got = find_source(str(files.out), bad["uri"])
    assert [g["unit"] for g in got] == [bad["unit"]] and got[0]["n_errors"] >= 1
    with pytest.raises(NotFound, match="no unit"):
        find_source(str(files.out), "/nowhere/")
    relative = "corpus/code/" + code[0]["source"].split("/corpus/code/")[1]  # as the user sees the input
    assert {g["shard"] for g in find_source(str(files.out), relative)} == {
        s["shard"] for s in files.samples if s["source"] == code[0]["source"]}
    assert {g["shard"] for g in find_source(str(files.out), "corpus/code")} >= {s["shard"] for s in code}


def test_shard_inputs(files):
    s = files.samples[-1]
    got = shard_inputs(str(files.out), f"shards/{s['shard']}.arrow")
    assert got["unit"] == s["unit"] and s["source"] in [i["uri"] for i in got["inputs"]]


def test_cli(files, capsys):
    s = files.samples[3]
    args = argparse.Namespace(out=str(files.out), sample=s["id"], source=None, json=True)
    assert lineage_cli(args) == 0
    assert json.loads(capsys.readouterr().out)["shard"] == s["shard"]
    args = argparse.Namespace(out=str(files.out), sample=None, source=s["source"])
    assert lineage_cli(args) == 0
    assert s["shard"] in capsys.readouterr().out
    args = argparse.Namespace(out=str(files.out), sample="/nowhere/x", source=None)
    assert lineage_cli(args) == 1
    assert "not in" in capsys.readouterr().err


def test_cli_json_answers_in_json_when_the_sample_is_not_in_a_shard(files, capsys):
    """`inspect --sample ID --json` for a quarantined (or empty) input, and for an unknown id: JSON on stdout,
    exit status 1, the message on stderr too."""
    bad = files.errors[0]
    args = argparse.Namespace(out=str(files.out), sample=bad["uri"] + (bad["member"] or ""), source=None, json=True)
    assert lineage_cli(args) == 1
    captured = capsys.readouterr()
    got = json.loads(captured.out)
    assert got["found"] is False and "quarantined" in got["error"] and "quarantined" in captured.err
    assert got["quarantined"]["reason"] == bad["reason"] and got["quarantined"]["stage"] == bad["stage"]
    assert got["quarantined"]["errors_file"] == f"_errors/{bad['unit']}.parquet"
    args = argparse.Namespace(out=str(files.out), sample="/nowhere/x", source=None, json=True)
    assert lineage_cli(args) == 1
    got = json.loads(capsys.readouterr().out)
    assert got["found"] is False and "no input in the ledger matches it" in got["error"] and "quarantined" not in got


def test_a_unique_end_of_an_id_is_enough(files, lines):
    s = next(s for s in files.samples if s["source"].endswith("/json/decoder.py"))
    assert find_sample(str(files.out), "json/decoder.py")["sample"] == s["id"]
    with pytest.raises(NotFound, match="give more of it"):
        find_sample(str(files.out), "__init__.py")
    line = lines.samples[5]
    tail = line["id"].split("/corpus/", 1)[1]
    got = find_sample(str(lines.out), tail)
    assert (got["sample"], got["shard"]) == (line["id"], line["shard"])
