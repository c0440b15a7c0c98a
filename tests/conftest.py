"""Session fixtures: one local Ray (2 CPUs, 127.0.0.1), one moto S3 server, real corpora, a trained BPE."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

STDLIB = Path(sysconfig.get_paths()["stdlib"])
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_address():
    """One real local Ray for the whole session; CLI subprocesses join it with --address."""
    import ray
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:"), address
    yield address
    ray.shutdown()


def run_cli(*args: str, address: str | None = None, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `tokenmill` CLI in a subprocess (joining the session's Ray when given)."""
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    if address and args and args[0] in ("run",):
        cmd += ["--address", address]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def s3_server():
    """moto in server mode on 127.0.0.1; yields the endpoint URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Standard AWS variables pointing at the moto server (what users set for real S3)."""
    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    return env


def copy_stdlib(dest: Path, packages: tuple[str, ...], limit: int | None = None) -> list[Path]:
    """Copy real .py files of some stdlib packages into dest (flat names kept unique)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for package in packages:
        for src in sorted((STDLIB / package).rglob("*.py")):
            target = dest / package / src.relative_to(STDLIB / package)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            out.append(target)
            if limit and len(out) >= limit:
                return out
    return out


@pytest.fixture(scope="session")
def bpe_tokenizer(tmp_path_factory) -> Path:
    """A byte-level BPE (vocab 2,000) trained by tokenmill itself on real stdlib code."""
    from pipeline.spec import SourceSpec
    from pipeline.train.bpe import sample_corpus, train_bpe
    root = tmp_path_factory.mktemp("bpe")
    corpus = root / "corpus"
    copy_stdlib(corpus, ("json", "email", "unittest"))
    out = root / "tokenizer.json"
    train_bpe(sample_corpus(SourceSpec(uri=str(corpus), format="files", modality="code"), 4 << 20), 2000, str(out))
    return out
