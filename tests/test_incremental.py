"""Nightly incremental runs and bad states of an output folder, through the real CLI on real Ray."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tm_testing import STDLIB, copy_stdlib, run_cli
from pipeline.lock import LOCK

JOB = """name: nightly
source: {{uri: {corpus}, format: files, modality: code, unit_bytes: 40KiB}}
tokenizer: {{kind: hf, path: {tok}, add_eos: {eos}}}
sink: {{uri: {out}, formats: [arrow]}}
resources: {{workers: {workers}}}
report: false
"""


def job(root: Path, tok: Path, out: str, corpus: str = "corpus", eos: str = "true", workers: int = 2) -> Path:
    path = root / f"{out}-{eos}-{workers}.yaml"
    path.write_text(JOB.format(corpus=root / corpus, tok=tok, out=root / out, eos=eos, workers=workers))
    return path


def run_ok(job_path: Path, address: str) -> str:
    result = run_cli("run", str(job_path), address=address)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def index(root: Path, out: str) -> dict:
    data = json.loads((root / out / "dataset.json").read_text())
    return {"shards": data["shards"], "totals": data["totals"]}


@pytest.fixture
def root(tmp_path):
    copy_stdlib(tmp_path / "corpus", ("json", "email"))
    return tmp_path


def test_changed_and_deleted_inputs_match_a_scratch_run(root, bpe_tokenizer, ray_address):
    nightly = job(root, bpe_tokenizer, "out")
    run_ok(nightly, ray_address)
    files = sorted((root / "corpus").rglob("*.py"))
    changed, deleted = files[3], files[10]
    changed.write_text(changed.read_text() + "\n# changed tonight\n")
    deleted.unlink()
    shutil.copyfile(STDLIB / "bisect.py", root / "corpus" / "json" / "zz_new.py")
    log = run_ok(nightly, ray_address)
    assert "already committed" in log
    removed = re.search(r" (\d+) removed \(their inputs are gone or changed\), ", log)
    assert removed and int(removed.group(1)) >= 1, log[-2000:]  # the units of the changed and deleted files
    shutil.copytree(root / "corpus", root / "corpus2")
    # a from-scratch run on the same files (same paths, so same ids) must give the same index
    scratch = job(root, bpe_tokenizer, "scratch")
    run_ok(scratch, ray_address)
    assert index(root, "out") == index(root, "scratch")
    ids = json.dumps(index(root, "out"))
    assert "changed tonight" not in ids  # (sanity: contents are not in the index)
    shards_on_disk = {p.name for p in (root / "out" / "shards").iterdir()}
    assert shards_on_disk == {Path(s["files"]["arrow"]["path"]).name for s in index(root, "out")["shards"]}


def test_missing_truncated_and_half_written_shards_are_redone(root, bpe_tokenizer, ray_address):
    nightly = job(root, bpe_tokenizer, "out")
    run_ok(nightly, ray_address)
    clean = {p.name: p.read_bytes() for p in (root / "out" / "shards").iterdir()}
    shards = sorted((root / "out" / "shards").iterdir())
    shards[0].unlink()
    shards[1].write_bytes(shards[1].read_bytes()[:100])
    (root / "out" / "shards" / f"{shards[2].name}.tmp-{'a' * 32}").write_bytes(b"half")  # as write_atomic names it
    log = run_ok(nightly, ray_address)
    assert "missing or truncated" in log and "2 redone" in log
    assert {p.name: p.read_bytes() for p in (root / "out" / "shards").iterdir()} == clean


def test_spec_changes(root, bpe_tokenizer, ray_address, tmp_path_factory):
    run_ok(job(root, bpe_tokenizer, "out"), ray_address)
    harmless = run_ok(job(root, bpe_tokenizer, "out", workers=1), ray_address)
    assert "0 run" in harmless
    redo = run_ok(job(root, bpe_tokenizer, "out", eos="false"), ray_address)
    assert "spec changed" in redo
    other_tok = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    from pipeline.spec import SourceSpec
    from pipeline.train.bpe import sample_corpus, train_bpe
    train_bpe(sample_corpus(SourceSpec(uri=str(root / "corpus")), 1 << 20), 600, str(other_tok))
    refused = run_cli("run", str(job(root, other_tok, "out")), address=ray_address)
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert "made with tokenizer" in last and "new sink.uri" in last


def test_two_runs_at_once_one_refuses_and_crashed_holder_is_taken_over(root, bpe_tokenizer, ray_address):
    nightly = job(root, bpe_tokenizer, "out")
    (root / "out").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (root / "out" / LOCK).write_text(json.dumps({"host": os.uname().nodename, "pid": holder.pid,
                                                 "token": "x", "heartbeat": time.time()}))
    refused = run_cli("run", str(nightly), address=ray_address)
    assert refused.returncode == 2 and "another run holds" in refused.stderr
    holder.kill()
    holder.wait()
    run_ok(nightly, ray_address)  # the holder is gone: its lease is taken over
    assert not (root / "out" / LOCK).exists()


def test_a_renamed_tokenizer_file_leaves_no_stale_copy(root, bpe_tokenizer, ray_address):
    """The tokenizer file renamed between runs (same content): nothing is redone, and OUT/tokenizer/ then holds
    the new name only, which the index names; the old copy is removed after the new index is written."""
    first = job(root, bpe_tokenizer, "out")
    run_ok(first, ray_address)
    assert sorted(p.name for p in (root / "out" / "tokenizer").iterdir()) == [bpe_tokenizer.name]
    moved = root / "tok2" / "renamed-tokenizer.json"
    moved.parent.mkdir()
    shutil.copyfile(bpe_tokenizer, moved)
    before = index(root, "out")
    (root / "out" / "tokenizer" / "a-folder").mkdir()  # not a tokenizer copy: left alone, and no obstacle
    log = run_ok(job(root, moved, "out"), ray_address)
    assert sorted(p.name for p in (root / "out" / "tokenizer").iterdir()) == ["a-folder", "renamed-tokenizer.json"], \
        log[-2000:]
    data = json.loads((root / "out" / "dataset.json").read_text())
    assert data["tokenizer"]["files"] == ["tokenizer/renamed-tokenizer.json"]
    assert index(root, "out") == before  # the same shards: a file's name is not its content
