"""`tokenmill submit` through the Ray Jobs API of a real `ray start --head` on 127.0.0.1."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.tm_testing import REPO, copy_stdlib, free_port, run_cli


class Head(str):
    """The head's dashboard URL (the Jobs API), with its GCS address as `.gcs`."""

    def __new__(cls, url: str, gcs: str) -> "Head":
        head = super().__new__(cls, url)
        head.gcs = gcs
        return head


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A Ray head with its dashboard (Jobs API) on loopback, stopped by this fixture alone."""
    ray_bin = Path(os.sys.executable).parent / "ray"
    port, dash = free_port(), free_port()
    temp = tmp_path_factory.mktemp("rayhead")
    # the job's `python` is the head's: put this interpreter's folder first on its PATH
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
                             f"--dashboard-port={dash}", "--include-dashboard=true", f"--temp-dir={temp}",
                             "--disable-usage-stats",
                             # another Ray (the session's) may hold the default agent ports: pick free ones
                             *(f"--{name}={free_port()}" for name in (
                                 "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                                 "metrics-export-port", "ray-client-server-port"))], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/version", timeout=2)
            break
        except urllib.error.HTTPError:  # it answers (401 without a token): it is up
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("ray start --head exited")
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("the Ray dashboard did not come up")
    yield Head(url, f"127.0.0.1:{port}")
    proc.terminate()
    proc.wait(timeout=60)
    _kill_leftovers(str(temp))


def _kill_leftovers(marker: str) -> None:
    """Stop only this head's processes (never `ray stop`, which would stop every Ray here)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


def test_submit_runs_the_job_and_exits_with_its_status(tmp_path, head, bpe_tokenizer):
    copy_stdlib(tmp_path / "corpus", ("json",))
    job = tmp_path / "job.yaml"
    job.write_text(f"name: submitted\nsource: {{uri: corpus, format: files, modality: code}}\n"
                   f"tokenizer: {{kind: hf, path: {bpe_tokenizer}}}\nsink: {{uri: out}}\nreport: false\n")
    result = run_cli("submit", str(job), "--address", head, timeout=600)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    assert "SUCCEEDED" in result.stderr and "tokenmill: submitted" in result.stdout
    index = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert index["totals"]["n_samples"] == len(list((tmp_path / "corpus").rglob("*.py")))


def test_submit_to_a_refusing_endpoint_fails_clearly(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("name: x\nsource: {uri: /usr/share/doc}\ntokenizer: {kind: bytes}\nsink: {uri: out}\n")
    result = run_cli("submit", str(job), "--address", f"http://127.0.0.1:{free_port()}", timeout=120)
    assert result.returncode == 2
    assert "cannot reach the Ray Jobs API" in result.stderr.strip().splitlines()[-1]


def test_run_against_an_unreachable_cluster_fails_clearly(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text("hi")
    job = tmp_path / "job.yaml"
    job.write_text("name: x\nsource: {uri: c}\ntokenizer: {kind: bytes}\nsink: {uri: out}\nreport: false\n")
    result = run_cli("run", str(job), "--address", f"127.0.0.1:{free_port()}", timeout=180)
    assert result.returncode == 2
    assert "cannot reach the Ray cluster" in result.stderr.strip().splitlines()[-1]


def test_run_on_a_token_auth_cluster_without_the_token_says_so_at_once(head, tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("hello")
    job = tmp_path / "job.yaml"
    job.write_text(f"name: auth\nsource: {{uri: {tmp_path / 'corpus'}}}\ntokenizer: {{kind: bytes}}\n"
                   f"sink: {{uri: {tmp_path / 'out'}}}\nreport: false\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["RAY_AUTH_MODE"] = "disabled"  # a client that does not send the cluster's token
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(job), "--address", head.gcs],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "InvalidAuthToken" in last and "RAY_AUTH_MODE=token" in last and "auth_token" in last, last
