"""The run lease against real storage faults and clocks that disagree (no Ray)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.dataset.layout import LOCK
from pipeline.errors import OutputError
from pipeline.lock import LEASE_S, LeaseLost, RunLease
from pipeline.storage import Storage


def _lock(out: Path, **info) -> Path:
    out.mkdir(exist_ok=True)
    path = out / LOCK
    path.write_text(json.dumps({"host": "other-host", "pid": 1, "token": "theirs", "heartbeat": time.time(), **info}))
    return path


def test_a_failed_heartbeat_is_retried_then_the_lease_is_lost(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    lease = RunLease(Storage(str(out)), heartbeat_s=0.1, lease_s=0.6)
    with lease:
        lock = out / LOCK
        lock.unlink()
        lock.mkdir()  # a real OS error on every write: the lock path is now a folder
        time.sleep(0.35)
        assert lease.lost is None, "one failed write must not end the lease"
        deadline = time.monotonic() + 5
        while lease.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.lost and "could not renew the lease" in lease.lost
        with pytest.raises(LeaseLost, match="stopped without writing more"):
            lease.check()
        lock.rmdir()


def test_heartbeats_keep_the_lease_fresh(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with RunLease(Storage(str(out)), heartbeat_s=0.05) as lease:
        first = json.loads((out / LOCK).read_text())["heartbeat"]
        time.sleep(0.3)
        assert json.loads((out / LOCK).read_text())["heartbeat"] > first
        lease.check()
    assert not (out / LOCK).exists()


def test_a_lease_from_the_future_is_judged_by_the_storage_clock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    lock = _lock(out, heartbeat=time.time() + 86_400)  # a holder whose clock runs a day ahead
    with pytest.raises(OutputError, match="another run holds"):
        RunLease(Storage(str(out))).__enter__()  # just written: fresh, whatever its clock says
    old = time.time() - LEASE_S - 30
    os.utime(lock, (old, old))  # not rewritten for longer than the lease: its holder is gone
    with RunLease(Storage(str(out))) as lease:
        assert json.loads(lock.read_text())["token"] == lease.token


def test_a_live_holder_on_this_host_keeps_its_lease_whatever_the_heartbeat_says(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock = _lock(out, host=socket.gethostname(), pid=holder.pid, heartbeat=time.time() - 3600)
        old = time.time() - 3600
        os.utime(lock, (old, old))
        with pytest.raises(OutputError, match=f"pid {holder.pid}"):
            RunLease(Storage(str(out))).__enter__()
    finally:
        holder.kill()
        holder.wait()
    with RunLease(Storage(str(out))):  # its holder is gone: taken over at once
        pass
