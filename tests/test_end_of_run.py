"""The end of a run, cut at each step, and shards changed on storage: the real CLI on real Ray.

The driver dies (as by SIGKILL: os._exit) at each step of the end-of-run sequence, chosen
by TOKENMILL_TEST_CRASH_AT, not by timing. After each: dataset.json never names a shard
that is not on disk, and the next run converges to a clean run's bytes.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.dataset import layout
from pipeline.job import CRASH_ENV
from tests.tm_testing import STDLIB, copy_stdlib, run_cli

JOB = """name: endofrun
source: {{uri: {corpus}, format: files, modality: code, unit_bytes: 40KiB}}
tokenizer: {{kind: hf, path: {tok}}}
sink: {{uri: {out}, formats: [arrow, webdataset]}}
resources: {{workers: 2}}
report: false
"""
STEPS = ("units-committed", "index-written", "stale-removed", "orphans-removed")


def _job(root: Path, tok: Path, out: str) -> Path:
    path = root / f"{out}.yaml"
    path.write_text(JOB.format(corpus=root / "corpus", tok=tok, out=root / out))
    return path


def _run(job: Path, address: str, env: dict | None = None):
    return run_cli("run", str(job), address=address, env=env)


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}


def _index_names_only_present_shards(out: Path) -> int:
    index = json.loads((out / layout.INDEX).read_text())
    for shard in index["shards"]:
        for info in shard["files"].values():
            path = out / info["path"]
            assert path.is_file() and path.stat().st_size == info["size"], f"index names missing {path}"
    return len(index["shards"])


@pytest.fixture(scope="module")
def changed(tmp_path_factory, bpe_tokenizer, ray_address):
    """A committed output, then the corpus changed (one file edited, one deleted, one added); and a
    clean run of the changed corpus to compare with."""
    root = tmp_path_factory.mktemp("endofrun")
    copy_stdlib(root / "corpus", ("json", "email"))
    first = _run(_job(root, bpe_tokenizer, "before"), ray_address)
    assert first.returncode == 0, first.stderr[-2000:]
    files = sorted((root / "corpus").rglob("*.py"))
    files[2].write_text(files[2].read_text() + "\n# edited\n")
    files[7].unlink()
    shutil.copyfile(STDLIB / "bisect.py", root / "corpus" / "email" / "zz_added.py")
    clean = _run(_job(root, bpe_tokenizer, "clean"), ray_address)
    assert clean.returncode == 0, clean.stderr[-2000:]
    return root


@pytest.mark.parametrize("step", STEPS)
def test_driver_killed_at_each_end_of_run_step(changed: Path, bpe_tokenizer, ray_address, step: str) -> None:
    out = changed / f"out-{step}"
    shutil.copytree(changed / "before", out)
    job = _job(changed, bpe_tokenizer, out.name)
    crashed = _run(job, ray_address, env={CRASH_ENV: step})
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert _index_names_only_present_shards(out) > 0
    healed = _run(job, ray_address)
    assert healed.returncode == 0, healed.stderr[-2000:]
    assert _shards(out) == _shards(changed / "clean")
    a, b = (json.loads((d / layout.INDEX).read_text()) for d in (out, changed / "clean"))
    assert a["shards"] == b["shards"] and a["totals"] == b["totals"]


def test_changed_shard_bytes_are_found_by_verify_and_redone_by_run_verify(changed: Path, bpe_tokenizer,
                                                                         ray_address) -> None:
    out = changed / "out-verify"
    shutil.copytree(changed / "clean", out)
    assert run_cli("verify", str(out)).returncode == 0
    victim = sorted((out / "shards").glob("*.arrow"))[1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the sha256 tells
    victim.write_bytes(bytes(data))
    found = run_cli("verify", str(out))
    assert found.returncode == 1 and f"shards/{victim.name}: sha256 differs" in found.stdout
    job = _job(changed, bpe_tokenizer, out.name)
    plain = _run(job, ray_address)
    assert plain.returncode == 0 and "0 redone" in plain.stdout  # sizes match: a plain run trusts them
    fixed = run_cli("run", str(job), "--verify", address=ray_address)
    assert fixed.returncode == 0 and "1 redone" in fixed.stdout, fixed.stdout + fixed.stderr[-2000:]
    assert "changed on storage" in fixed.stderr
    assert run_cli("verify", str(out)).returncode == 0
    assert _shards(out) == _shards(changed / "clean")
