"""The spine's acceptance, as a new user would try it: train -> run -> check shards, on real Ray."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from tests.tm_testing import STDLIB, copy_stdlib, run_cli
from pipeline.tokenizers.text import HFTokenizer

JOB = """name: code-accept
source: {{uri: {corpus}, format: files, modality: code, unit_bytes: 200KiB}}
tokenizer: {{kind: hf, path: {tok}}}
sink: {{uri: {out}, formats: [arrow, webdataset]}}
resources: {{workers: 2}}
report: false
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("accept")
    files = copy_stdlib(root / "corpus", ("email", "json", "unittest", "logging", "xml", "asyncio", "importlib", "http", "idlelib", "multiprocessing", "ctypes"), limit=300)
    assert len(files) == 300
    (root / "corpus" / "bad_utf8.py").write_bytes(b"x = '\xff\xfe'\n")
    (root / "corpus" / "empty.py").write_bytes(b"")
    return root


def write_job(root: Path, tok: Path, out: str, corpus: str = "corpus") -> Path:
    job = root / f"job-{out}.yaml"
    job.write_text(JOB.format(corpus=corpus, tok=tok, out=out))
    return job


def read_arrow(out: Path) -> pa.Table:
    index = json.loads((out / "dataset.json").read_text())
    tables = [pa.ipc.open_file(out / s["files"]["arrow"]["path"]).read_all() for s in index["shards"]]
    return pa.concat_tables(tables)


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}


def test_train_run_decode_resume_incremental(corpus, ray_address):
    tok = corpus / "tok" / "tokenizer.json"
    trained = run_cli("train", "--input", str(corpus / "corpus"), "--vocab-size", "3000", "--output", str(tok))
    assert trained.returncode == 0, trained.stderr
    job = write_job(corpus, tok, "out1")
    first = run_cli("run", str(job), address=ray_address)
    assert first.returncode == 0, first.stderr[-3000:]
    out = corpus / "out1"
    index = json.loads((out / "dataset.json").read_text())
    sources = sorted(p for p in (corpus / "corpus").rglob("*.py"))
    good = [p for p in sources if p.name != "bad_utf8.py" and p.stat().st_size > 0]
    n_empty = sum(p.stat().st_size == 0 for p in sources)

    # every valid file is one sample, and decoding its tokens gives the file back exactly
    table = read_arrow(out)
    assert table.num_rows == len(good) == index["totals"]["n_samples"]
    # ids and sources are names below the source folder, not where it is mounted
    root = corpus / "corpus"
    assert sorted(table.column("id").to_pylist()) == sorted(str(p.relative_to(root)) for p in good)
    assert table.column("source").to_pylist() == table.column("id").to_pylist()
    assert index["token_dtype"] == "uint16" and index["tokenizer"]["vocab_size"] == 3000
    hf = HFTokenizer(str(tok))
    checked = 0
    for sample_id, tokens in zip(table.column("id").to_pylist(), table.column("tokens").to_pylist()):
        assert tokens[-1] == hf.eos_id
        assert hf.decode(np.array(tokens)) == (root / sample_id).read_text()
        checked += 1
    assert checked == len(good)
    assert index["totals"]["n_tokens"] == sum(len(t) for t in table.column("tokens").to_pylist())

    # the WebDataset tars hold the same tokens as the Arrow shards
    wds_tokens = {}
    for shard in index["shards"]:
        for s in wds.WebDataset(str(out / shard["files"]["webdataset"]["path"]), shardshuffle=False).decode():
            wds_tokens[s["json"]["id"]] = s["tokens.npy"].tolist()
    assert wds_tokens == dict(zip(table.column("id").to_pylist(), table.column("tokens").to_pylist()))

    # bad files are quarantined with reasons, the rest committed
    errors = pa.concat_tables([pq.read_table(p) for p in (out / "_errors").glob("*.parquet")])
    reasons = dict(zip([Path(u).name for u in errors.column("uri").to_pylist()], errors.column("reason").to_pylist()))
    assert reasons["bad_utf8.py"].startswith("invalid UTF-8") and reasons["empty.py"] == "empty document"
    stages = dict(zip([Path(u).name for u in errors.column("uri").to_pylist()], errors.column("stage").to_pylist()))
    assert stages["empty.py"] == "empty" and stages["bad_utf8.py"] == "decode"
    # an empty file is a fact, not bad input: counted apart, and said apart
    assert index["totals"]["n_errors"] == 1 and index["totals"]["n_empty"] == n_empty
    assert f"1 quarantined, {n_empty} empty (skipped)" in first.stdout
    status = run_cli("status", str(out))
    assert f"quarantined 1, empty (skipped) {n_empty}" in status.stdout, status.stdout
    empty_file = next(p for p in sources if p.stat().st_size == 0)
    shown = run_cli("inspect", str(out), "--sample", str(empty_file))
    assert shown.returncode != 0 and "empty, skipped: empty document" in shown.stderr, shown.stderr[-500:]

    # rerun: nothing to do, nothing rewritten
    before = {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    again = run_cli("run", str(job), address=ray_address)
    assert again.returncode == 0 and "0 run" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == before
    assert json.loads((out / "dataset.json").read_text())["tokenizer"] == index["tokenizer"]

    # a second run into a new folder gives identical shard bytes (with another worker count)
    job2 = write_job(corpus, tok, "out2")
    assert run_cli("run", str(job2), "--workers", "1", address=ray_address).returncode == 0
    assert shard_bytes(out) == shard_bytes(corpus / "out2")

    # the same corpus copied elsewhere (times kept), the tokenizer moved, the job renamed: the same units,
    # shard names and bytes; and a renamed job over the same output runs nothing
    moved = corpus / "moved"
    shutil.copytree(corpus / "corpus", moved / "mnt" / "data", copy_function=shutil.copy2)
    shutil.copytree(corpus / "tok", moved / "models")
    (moved / "job.yaml").write_text(JOB.replace("name: code-accept", "name: renamed-job").format(
        corpus="mnt/data", tok="models/tokenizer.json", out="out"))
    copied = run_cli("run", str(moved / "job.yaml"), address=ray_address)
    assert copied.returncode == 0, copied.stderr[-2000:]
    assert shard_bytes(out) == shard_bytes(moved / "out")
    renamed = corpus / "job-renamed.yaml"
    renamed.write_text(job.read_text().replace("name: code-accept", "name: code-accept-v2"))
    again = run_cli("run", str(renamed), address=ray_address)
    assert again.returncode == 0 and "0 run" in again.stdout, again.stdout[-1500:]

    # three more files: only their units run, and the index equals a from-scratch run
    for name in ("abc.py", "heapq.py", "bisect.py"):
        shutil.copyfile(STDLIB / name, corpus / "corpus" / "json" / name)
    grown = run_cli("run", str(job), address=ray_address)
    assert grown.returncode == 0, grown.stderr[-2000:]
    summary_line = next(line for line in grown.stdout.splitlines() if "units:" in line)
    n_run = int(summary_line.split("planned, ")[1].split(" run")[0])
    assert 1 <= n_run <= 4, summary_line
    assert read_arrow(out).num_rows == len(good) + 3
    scratch = write_job(corpus, tok, "out3")
    assert run_cli("run", str(scratch), address=ray_address).returncode == 0
    a, b = (json.loads((corpus / o / "dataset.json").read_text()) for o in ("out1", "out3"))
    assert a["shards"] == b["shards"] and a["totals"] == b["totals"]


def test_spec_and_path_faults_stop_before_work(tmp_path, ray_address):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("hello")
    cases = {
        "missing input": ("source: {uri: nowhere/*.txt}\ntokenizer: {kind: bytes}\nsink: {uri: out}\n", "no such file"),
        "typo key": ("source: {uri: c, formatt: files}\ntokenizer: {kind: bytes}\nsink: {uri: out}\n", "formatt"),
        "unknown kind": ("source: {uri: c}\ntokenizer: {kind: wordpiece9}\nsink: {uri: out}\n", "unknown kind"),
        "unwritable output": ("source: {uri: c}\ntokenizer: {kind: bytes}\nsink: {uri: /proc/forbidden/out}\n",
                              "cannot write"),
    }
    for name, (body, message) in cases.items():
        job = tmp_path / f"{name.replace(' ', '_')}.yaml"
        job.write_text("name: bad\n" + body)
        result = run_cli("run", str(job), address=ray_address)
        assert result.returncode == 2, (name, result.stderr[-2000:])
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("tokenmill: error:") and message in last, (name, last)
    assert not (tmp_path / "out").exists()


def test_validate_command(tmp_path):
    job = tmp_path / "j.yaml"
    job.write_text("name: ok\nsource: {uri: /usr/share/doc}\ntokenizer: {kind: bytes}\nsink: {uri: out}\n")
    result = run_cli("validate", str(job))
    assert result.returncode == 0 and "valid job spec" in result.stdout


def test_train_errors_are_one_line(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("some text")
    for args, message in (((str(tmp_path / "c"), "--vocab-size", "10"), "at least 258"),
                          ((str(tmp_path / "nowhere"),), "no such file")):
        result = run_cli("train", "--input", *args, "--output", str(tmp_path / "t.json"))
        assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1]


def test_a_tokenizer_file_renamed_and_moved_is_the_same_tokenizer(tmp_path, bpe_tokenizer, ray_address):
    """The fingerprint is the files' content: a renamed copy of the tokenizer runs nothing on the same output,
    while a different tokenizer file is still refused."""
    copy_stdlib(tmp_path / "corpus", ("json",))
    (tmp_path / "elsewhere").mkdir()
    shutil.copyfile(bpe_tokenizer, tmp_path / "elsewhere" / "renamed.json")
    for name, tok in (("a", bpe_tokenizer), ("b", tmp_path / "elsewhere" / "renamed.json")):
        (tmp_path / f"{name}.yaml").write_text(JOB.format(corpus=tmp_path / "corpus", tok=tok, out=tmp_path / "out"))
    assert run_cli("run", str(tmp_path / "a.yaml"), address=ray_address).returncode == 0
    again = run_cli("run", str(tmp_path / "b.yaml"), address=ray_address)
    assert again.returncode == 0 and " 0 run," in again.stdout, again.stdout[-1500:] + again.stderr[-1500:]
    other = json.loads(bpe_tokenizer.read_text())
    other["added_tokens"] = other.get("added_tokens", []) + [{"id": other["model"]["vocab"].__len__(),
                                                               "content": "<|new|>", "single_word": False,
                                                               "lstrip": False, "rstrip": False,
                                                               "normalized": False, "special": True}]
    (tmp_path / "elsewhere" / "renamed.json").write_text(json.dumps(other))
    refused = run_cli("run", str(tmp_path / "b.yaml"), address=ray_address)
    assert refused.returncode == 2 and "holds a dataset made with tokenizer" in refused.stderr, refused.stderr[-800:]
    assert "(the bytes of its files differ: renamed.json)" in refused.stderr, refused.stderr[-800:]
