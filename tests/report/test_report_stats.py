"""The report's numbers against counts computed independently from the shards with pyarrow."""
from __future__ import annotations

import json
import math
import shutil
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from pipeline.report import compute_stats
from pipeline.dataset.read import open_dataset
from pipeline.report.stats import dask_scheduler, partitions, token_counts
from pipeline.report.summary import reason_kind
from tests.report.fixtures import VOCAB, make_dataset, merge_pairs


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("plain"), formats=("arrow", "parquet", "webdataset"))


@pytest.fixture(scope="module")
def stats(plain):
    return compute_stats(str(plain.out))


def shard_rows(out: Path) -> list[dict]:
    """Every row of every shard, read with pyarrow from the files dataset.json names."""
    index = json.loads((out / "dataset.json").read_text())
    rows = []
    for shard in index["shards"]:
        table = ipc.open_file(pa.memory_map(str(out / shard["files"]["arrow"]["path"]))).read_all()
        rows += [dict(r, shard=shard["name"]) for r in table.to_pylist()]
    assert rows, "the fixture wrote no rows"
    return rows


def by_key(rows: list[dict], key) -> dict:
    acc = defaultdict(lambda: {"n_samples": 0, "n_tokens": 0, "n_bytes": 0})
    for r in rows:
        a = acc[key(r)]
        a["n_samples"] += 1
        a["n_tokens"] += len(r["tokens"])
        a["n_bytes"] += r["n_bytes"]
    return dict(acc)


def table_of(groups: list[dict], key: str = "group") -> dict:
    return {g[key]: {k: g[k] for k in ("n_samples", "n_tokens", "n_bytes")} for g in groups}


def test_totals_equal_index_and_shards(plain, stats):
    index = json.loads((plain.out / "dataset.json").read_text())
    rows = shard_rows(plain.out)
    for key in ("n_samples", "n_tokens", "n_bytes", "n_shards"):
        assert stats["totals"][key] == index["totals"][key]
    assert stats["totals"]["n_samples"] == len(rows)
    assert stats["totals"]["n_tokens"] == sum(len(r["tokens"]) for r in rows)
    assert stats["errors"]["n_errors"] == index["totals"]["n_errors"] == len(plain.errors) > 0
    assert stats["missing_shards"] == [] and stats["mismatched_shards"] == []


def test_groups_by_folder(plain, stats):
    rows = shard_rows(plain.out)
    want = by_key(rows, lambda r: r["source"].split("/corpus/", 1)[1].split("/", 1)[0])
    assert set(want) == {"code", "docs"}
    assert table_of(stats["groups"]) == want
    total_bpt = stats["totals"]["n_bytes"] / stats["totals"]["n_tokens"]
    for g in stats["groups"]:
        assert g["bytes_per_token"] == pytest.approx(g["n_bytes"] / g["n_tokens"])
        assert g["token_premium"] == pytest.approx(total_bpt / g["bytes_per_token"])


@pytest.mark.parametrize("group_by, key", [
    ("extension", lambda r: PurePosixPath(r["source"]).suffix),
    ("modality", lambda r: r["modality"]),
    ("meta:lang", lambda r: json.loads(r["meta"])["lang"]),
])
def test_other_groupings(plain, group_by, key):
    want = by_key(shard_rows(plain.out), key)
    assert len(want) == 2
    assert table_of(compute_stats(str(plain.out), group_by=group_by)["groups"]) == want


def test_modalities(plain, stats):
    assert table_of(stats["modalities"], "modality") == by_key(shard_rows(plain.out), lambda r: r["modality"])


def test_lengths_histogram_and_longest(plain, stats):
    lengths = sorted((len(r["tokens"]), r["id"]) for r in shard_rows(plain.out))
    ln = stats["lengths"]
    assert (ln["min"], ln["max"]) == (lengths[0][0], lengths[-1][0])
    assert ln["mean"] == pytest.approx(sum(n for n, _ in lengths) / len(lengths))
    assert ln["min"] <= ln["p50"] <= ln["p90"] <= ln["p99"] <= ln["max"]
    want = Counter(math.floor(math.log2(n) * 4) for n, _ in lengths)
    got = {h["lo"]: h["count"] for h in ln["histogram"]}
    assert sorted(got.values()) == sorted(want.values())
    for n, _ in lengths:
        assert sum(h["count"] for h in ln["histogram"] if h["lo"] <= n < h["hi"]) == want[math.floor(math.log2(n) * 4)]
    assert [r["n_tokens"] for r in stats["longest"]] == [n for n, _ in lengths[::-1][:10]]
    assert stats["longest"][0]["id"] == lengths[-1][1]


def test_vocab_counts(plain, stats):
    counter = Counter(t for r in shard_rows(plain.out) for t in r["tokens"])
    v = stats["vocab"]
    assert v["n_tokens"] == sum(counter.values())
    assert v["n_used"] == len(counter)
    assert v["unused_share"] == pytest.approx(1 - len(counter) / VOCAB)
    assert 0 < v["unused_share"] < 1
    assert [t["count"] for t in v["top"]] == [c for _, c in counter.most_common(20)]
    assert all(counter[t["id"]] == t["count"] for t in v["top"])
    assert all(isinstance(t["text"], str) for t in v["top"])


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_other_shard_formats_give_the_same_numbers(plain, stats, fmt, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(plain.out, out)
    index = json.loads((out / "dataset.json").read_text())
    for shard in index["shards"]:
        shard["files"] = {fmt: shard["files"][fmt]}
        (out / shard["files"][fmt]["path"]).with_suffix(".arrow").unlink()
    (out / "dataset.json").write_text(json.dumps(index))
    other = compute_stats(str(out))
    for key in ("totals", "groups", "modalities", "lengths", "longest", "vocab"):
        assert other[key] == stats[key], key


def test_dynamic_stage_expands_to_base_tokens(tmp_path):
    ds = make_dataset(tmp_path, dynamic_merges=6, n_code=10, n_docs=3)
    s = compute_stats(str(ds.out))
    base = Counter(t for smp in ds.samples for t in smp["tokens"])
    stored = sum(len(smp["stored"]) for smp in ds.samples)
    d = s["dynamic"]
    assert d["n_base_tokens"] == sum(base.values()) > d["n_tokens"] == stored
    assert d["reduction"] == pytest.approx(1 - stored / sum(base.values()))
    assert {r["shard"] for r in d["shards"]} == {smp["shard"] for smp in ds.samples}
    assert all(r["n_merges"] == 6 for r in d["shards"])
    assert [t["count"] for t in s["vocab"]["top"]] == [c for _, c in base.most_common(20)]
    assert s["vocab"]["n_used"] == len(base)


def test_no_dynamic_section_without_the_stage(stats):
    assert stats["dynamic"] is None


def test_quarantine_by_reason(plain, stats):
    e = stats["errors"]
    assert sum(r["count"] for r in e["by_reason"]) == e["n_errors"] == len(plain.errors)
    assert [r["reason"] for r in e["by_reason"]] == ["invalid utf-8 at byte N"]
    assert {x["reason"] for r in e["by_reason"] for x in r["examples"]} == {x["reason"] for x in plain.errors}
    assert {x["uri"] for r in e["by_reason"] for x in r["examples"]} == {x["uri"] for x in plain.errors}
    assert e["by_stage"] == [{"stage": "decode", "count": len(plain.errors)}]


def test_throughput_from_ledger(plain, stats):
    ledger = [json.loads(p.read_text()) for p in (plain.out / "_ledger").glob("*.json")]
    th = stats["throughput"]
    assert len(th["runs"]) == 1
    assert th["n_units"] == th["latest"]["n_units"] == len(ledger)
    workers = th["latest"]["workers"]
    assert {w["worker"] for w in workers} == {f"{e['run']['host']}:{e['run']['pid']}" for e in ledger}
    assert sum(w["n_bytes"] for w in workers) == stats["totals"]["n_bytes"]
    tl = th["latest"]["timeline"]
    width = tl[1]["t"] - tl[0]["t"]
    assert sum(p["bytes_per_second"] * width for p in tl) == pytest.approx(stats["totals"]["n_bytes"], rel=1e-6)
    assert stats["report"]["seconds"] > 0 and stats["report"]["share_of_run"] > 0


def test_runs_split_by_idle_gaps(plain, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(plain.out, out)
    entries = sorted((out / "_ledger").glob("*.json"))
    for path in entries[: len(entries) // 2]:
        e = json.loads(path.read_text())
        e["run"].update(started=e["run"]["started"] - 86400, finished=e["run"]["finished"] - 86400)
        path.write_text(json.dumps(e))
    th = compute_stats(str(out))["throughput"]
    assert [r["n_units"] for r in th["runs"]] == [len(entries) // 2, len(entries) - len(entries) // 2]
    assert th["latest"]["n_units"] == len(entries) - len(entries) // 2


def test_scheduler_follows_the_ray_connection(plain, ray_address):
    """Without Ray: dask's threads; connected to Ray: Ray's dask scheduler, with the same numbers."""
    import subprocess
    import sys
    code = "from pipeline.report.stats import dask_scheduler; print(dask_scheduler())"
    alone = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert alone == "threads"
    assert getattr(dask_scheduler(), "__name__", "") == "ray_dask_get"
    index = json.loads((plain.out / "dataset.json").read_text())
    totals = compute_stats(str(plain.out))["totals"]
    assert totals["n_tokens"] == index["totals"]["n_tokens"] and totals["n_samples"] == index["totals"]["n_samples"]


def test_partitions_cover_every_shard_once(plain):
    refs, _ = open_dataset(str(plain.out)).shard_refs()
    assert len(refs) == 7
    for cpus in (1, 2, 64):
        parts = partitions(refs, cpus)
        assert [r for p in parts for r in p] == refs
        assert len(parts) == min(len(refs), 2 * cpus)  # small shards: two partitions per CPU


def test_batch_scope_dynamic_vocabularies(plain):
    """Two row groups with their own merges, in the layout pipeline/stages/dynamic.py writes."""
    rows = [s["tokens"] for s in plain.samples[:8]]
    first, a = merge_pairs(rows[:3], 5, VOCAB)
    second, b = merge_pairs(rows[3:], 7, VOCAB)
    ma, mb = a["groups"][0]["merges"], b["groups"][0]["merges"]
    assert ma != mb
    dyn = {"version": 1, "base_vocab_size": VOCAB, "scope": "batch",
           "groups": [{"rows": [0, 3], "merges": ma}, {"rows": [3, 8], "merges": mb}]}
    table = pa.table({"tokens": pa.array(first + second, pa.list_(pa.uint16()))}).replace_schema_metadata(
        {b"tokenmill.base_vocab_size": str(VOCAB).encode(), b"tokenmill.dynamic_vocab": json.dumps(dyn).encode()})
    counts, lengths = token_counts(table, "s", VOCAB)
    want = Counter(t for r in rows for t in r)
    assert {i: int(c) for i, c in enumerate(counts) if c} == dict(want)
    assert lengths == [{"shard": "s", "n_tokens": sum(map(len, first + second)),
                        "n_base_tokens": sum(want.values()), "n_merges": 12}]


@pytest.mark.parametrize("reason, kind", [
    ("invalid UTF-8 at byte 431: b'\\xf0\\xc9'", "invalid UTF-8 at byte N"),
    ("image claims 100x200 = 20,000 pixels, over limits.max_pixels",
     "image claims NxN = N pixels, over limits.max_pixels"),
    ("no video stream (streams: audio)", "no video stream"),
    ("", "(no reason)"),
])
def test_reason_kinds(reason, kind):
    assert reason_kind(reason) == kind
