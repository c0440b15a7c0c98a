"""Faults on a real two-node Ray cluster on this machine: a worker SIGKILLed, a node removed,
the driver killed. Each time the finished dataset equals a clean run's, byte for byte."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.dataset import layout
from tests.tm_testing import copy_stdlib, run_cli

JOB = """name: faults
source: {{uri: {corpus}, format: files, modality: code, unit_bytes: 20KiB}}
tokenizer: {{kind: hf, path: {tok}, engine: hf}}
sink: {{uri: {out}, formats: [arrow, webdataset]}}
resources: {{workers: 2, cpus_per_worker: 0.5, max_retries: 3}}
report: false
"""


@pytest.fixture(scope="module")
def cluster():
    """A head node and a worker node (1 CPU each), both on 127.0.0.1."""
    from ray.cluster_utils import Cluster
    c = Cluster(initialize_head=True, connect=False,
                head_node_args={"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"})
    worker = c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    assert c.address.startswith("127.0.0.1:")
    yield c, worker
    c.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, bpe_tokenizer):
    root = tmp_path_factory.mktemp("faults")
    copy_stdlib(root / "corpus", ("email", "json", "logging", "asyncio", "unittest", "xml"))
    return root, bpe_tokenizer


def job_file(root: Path, tok: Path, out: str) -> Path:
    path = root / f"{out}.yaml"
    path.write_text(JOB.format(corpus=root / "corpus", tok=tok, out=root / out))
    return path


def start_run(job: Path, address: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(job), "--address", address, "--quiet"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_commits(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "_ledger").exists() and len(list((out / "_ledger").glob("*.json"))) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended before {n} commits: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    pytest.fail("no commits in time")


def unit_worker_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(b"ray::UnitWorker"):
                pids.append(int(entry.name))
    return pids


def dataset_state(out: Path) -> dict:
    """Everything that must equal a clean run: index, ledger (minus run times/hosts), shard bytes, ids."""
    index = json.loads((out / "dataset.json").read_text())
    ledger = {}
    for p in sorted((out / "_ledger").glob("*.json")):
        entry = json.loads(p.read_text())
        entry.pop("run")
        ledger[p.name] = entry
    shards = {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}
    ids = []
    for s in index["shards"]:
        ids += pa.ipc.open_file(out / s["files"]["arrow"]["path"]).read_all().column("id").to_pylist()
    return {"index": index["shards"], "totals": index["totals"], "ledger": ledger, "shards": shards, "ids": ids}


@pytest.fixture(scope="module")
def clean(setup, cluster):
    root, tok = setup
    result = run_cli("run", str(job_file(root, tok, "clean")), "--address", cluster[0].address)
    assert result.returncode == 0, result.stderr[-3000:]
    state = dataset_state(root / "clean")
    assert len(state["ids"]) == len(set(state["ids"])) > 100
    assert len(state["index"]) >= 10
    return state


def test_worker_killed_mid_job(setup, cluster, clean):
    root, tok = setup
    out = root / "killed-worker"
    proc = start_run(job_file(root, tok, out.name), cluster[0].address)
    wait_for_commits(out, 1, proc)
    first = json.loads(next((out / "_ledger").glob("*.json")).read_text())
    victim = first["run"]["pid"]  # a worker of this job, busy with its next units
    assert victim in unit_worker_pids()
    os.kill(victim, signal.SIGKILL)
    status = run_cli("status", str(out), "--json")  # while the job runs (or just after)
    assert status.returncode == 0, status.stderr
    live = json.loads(status.stdout)
    assert live["units_committed"] >= 1 and live["units_total"] == len(clean["index"])
    assert live["state"] == "finished" or live["units_pending"] > 0
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert "0 failed" in stdout
    retries = int(stdout.split(" retries")[0].rsplit(", ", 1)[1])
    assert retries >= 1, stdout
    assert dataset_state(out) == clean
    final = json.loads(run_cli("status", str(out), "--json").stdout)
    assert final["state"] == "finished" and final["units_pending"] == 0
    assert final["units_committed"] == final["units_total"] == len(clean["index"])


def stopped_run(setup, cluster, name: str, sig: int, commits: int) -> tuple[Path, Path, subprocess.Popen]:
    """A run's output, job and driver, sent `sig` once `commits` units are committed."""
    root, tok = setup
    out = root / name
    job = job_file(root, tok, out.name)
    proc = start_run(job, cluster[0].address)
    wait_for_commits(out, commits, proc)
    proc.send_signal(sig)
    return out, job, proc


def resumes_to_the_clean_dataset(out: Path, job: Path, address: str, clean: dict) -> None:
    rerun = run_cli("run", str(job), "--address", address)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "already committed" in rerun.stdout
    assert dataset_state(out) == clean


def test_driver_killed_then_rerun(setup, cluster, clean):
    out, job, proc = stopped_run(setup, cluster, "killed-driver", signal.SIGKILL, 2)
    proc.wait(timeout=30)
    said = run_cli("status", str(out), "--json")
    status = json.loads(said.stdout)
    assert status["state"].startswith("interrupted") and status["units_pending"] > 0
    assert said.returncode == 1  # a scheduler can tell it from a finished dataset
    assert not (out / "dataset.json").exists() or len(list((out / "_ledger").glob("*.json"))) < len(clean["index"])
    resumes_to_the_clean_dataset(out, job, cluster[0].address, clean)


def test_sigterm_stops_the_run_with_its_reason_and_a_rerun_resumes_at_once(setup, cluster, clean):
    """A scheduler's stop (SIGTERM to the driver): one tokenmill line and exit 143 instead of Ray's stack dump;
    the run state says why and the lease is released, so `status` says failed (exit 1) and a rerun goes on
    at once with the committed units skipped."""
    out, job, proc = stopped_run(setup, cluster, "sigterm", signal.SIGTERM, 1)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "tokenmill: interrupted: stopped by SIGTERM; what committed stays committed: run the same command " \
           "again to resume" in stderr, stderr[-3000:]
    assert "SIGTERM received" not in stderr, stderr[-3000:]
    assert not (out / layout.LOCK).exists()  # the lease is released: nothing waits for it to go stale
    said = run_cli("status", str(out))
    assert said.returncode == 1 and "failed (stopped by SIGTERM; run the job again to resume)" in said.stdout, said.stdout
    resumes_to_the_clean_dataset(out, job, cluster[0].address, clean)


def test_node_removed_mid_job(setup, cluster, clean):
    c, worker = cluster
    root, tok = setup
    out = root / "removed-node"
    proc = start_run(job_file(root, tok, out.name), c.address)
    wait_for_commits(out, 1, proc)
    c.remove_node(worker)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert dataset_state(out) == clean
    c.add_node(num_cpus=1, node_ip_address="127.0.0.1")
