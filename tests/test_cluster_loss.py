"""Work that can no longer progress ends fast, with the reason: a dead Ray node, a model that never returns.

Both through the real CLI: the first on its own embedded Ray (whose node dies when its
`ray::DashboardAgent` is killed: Ray fate-shares the raylet with it), the second with a
real TorchScript encoder that loops forever on one real photo.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.dataset import layout
from tests.tm_testing import copy_stdlib, descendants, process_title, run_cli

STALL_S = 10
PACKAGES = ("email", "json", "http", "xml", "asyncio", "unittest", "logging", "concurrent", "importlib")


def _job(root: Path, tok: Path, out: str, workers: int = 1) -> Path:
    path = root / f"{out}.yaml"
    path.write_text(f"name: loss\nsource: {{uri: {root / 'corpus'}, format: files, modality: code, unit_bytes: 30KiB}}\n"
                    f"tokenizer: {{kind: hf, path: {tok}, engine: hf}}\nsink: {{uri: {root / out}}}\n"
                    f"resources: {{workers: {workers}, stall_timeout: {STALL_S}s}}\nreport: false\n")
    return path


def _wait_for_commit(out: Path, proc: subprocess.Popen, bound_s: float = 180) -> None:
    deadline = time.monotonic() + bound_s
    while not list((out / layout.LEDGER_DIR).glob("*.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended or never committed a unit"
        time.sleep(0.2)


def test_embedded_node_death_is_a_fast_clear_failure_and_a_rerun_resumes(tmp_path, bpe_tokenizer, ray_address):
    copy_stdlib(tmp_path / "corpus", PACKAGES)
    job = _job(tmp_path, bpe_tokenizer, "out")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(job), "--num-cpus", "1", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started: list[int] = []
    try:
        _wait_for_commit(tmp_path / "out", proc)
        started = descendants(proc.pid)
        agents = [p for p in started if process_title(p).startswith("ray::DashboardAgent")]
        assert len(agents) == 1, [process_title(p) for p in started]
        os.kill(agents[0], signal.SIGKILL)
        _, err = proc.communicate(timeout=STALL_S + 90)  # a bound on the wait, not a timing assertion
    finally:
        for pid in [proc.pid, *started]:  # whatever this test started and is still there
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert proc.returncode == 1, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert "the Ray node running this job died" in last and "rerun the same command to resume" in last, last
    state = json.loads((tmp_path / "out" / layout.RUN_STATE).read_text())
    assert state["state"] == "failed" and "Ray node" in state["error"]
    assert not (tmp_path / "out" / layout.LOCK).exists(), "the lease is released"

    rerun = run_cli("run", str(_job(tmp_path, bpe_tokenizer, "out", workers=2)), address=ray_address)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "already committed" in rerun.stdout
    clean = run_cli("run", str(_job(tmp_path, bpe_tokenizer, "clean", workers=2)), address=ray_address)
    assert clean.returncode == 0, clean.stderr[-3000:]
    shards = {d: {p.name: p.read_bytes() for p in (tmp_path / d / "shards").iterdir()} for d in ("out", "clean")}
    assert shards["out"] == shards["clean"] and len(shards["out"]) > 10


HANG_MEAN = 0.6  # of the photos below only scikit-image's `page` (a scanned page, mean 0.67) is this bright


def _looping_encoder(path: Path) -> Path:
    torch = pytest.importorskip("torch")

    class LoopsOnBrightPages(torch.nn.Module):
        """A patch encoder that never returns on a bright image (a bug a user's model could have)."""

        def __init__(self) -> None:
            super().__init__()
            self.vocab_size = 16
            self.threshold = HANG_MEAN

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            while bool(x.mean() > self.threshold):
                x = x * 1.0
            pooled = torch.nn.functional.avg_pool2d(x, 16).mean(dim=1)
            return (pooled * 15).long().clamp(0, 15)

    torch.jit.save(torch.jit.script(LoopsOnBrightPages()), str(path))
    return path


@pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:DeprecationWarning")
def test_a_model_that_never_returns_fails_its_unit_and_the_rest_commit(tmp_path, ray_address):
    from PIL import Image

    from tests import media_fixtures as mf
    names = mf.write_photos(tmp_path / "photos")
    Image.fromarray(mf.photo("page")).save(tmp_path / "photos" / "page.png")
    model = _looping_encoder(tmp_path / "hang.pt")
    job = tmp_path / "hang.yaml"
    job.write_text(f"name: hang\nsource: {{uri: {tmp_path / 'photos'}, modality: image, unit_bytes: 1KiB}}\n"
                   f"tokenizer: {{kind: torchscript, path: {model}, options: {{image_size: 64}}}}\n"
                   f"sink: {{uri: {tmp_path / 'out'}}}\n"
                   "resources: {workers: 2, unit_timeout: 8s, max_retries: 1}\nreport: false\n")
    done = run_cli("run", str(job), address=ray_address, timeout=240)
    assert done.returncode == 1, done.stderr[-3000:]
    failed = [line for line in done.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "unit timeout" in failed[0] and "resources.unit_timeout" in failed[0], done.stdout
    index = json.loads((tmp_path / "out" / layout.INDEX).read_text())
    assert index["totals"]["n_samples"] == len(names) and index["complete"] is False
