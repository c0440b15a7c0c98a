"""Helpers shared by the tests: real stdlib paths, free ports, the real CLI in a subprocess."""
from __future__ import annotations

import contextlib
import gc
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Iterator

STDLIB = Path(sysconfig.get_paths()["stdlib"])
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, address: str | None = None, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `tokenmill` CLI in a subprocess (joining the session's Ray when given)."""
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    if address and args and args[0] in ("run",):
        cmd += ["--address", address]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


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


@contextlib.contextmanager
def moto_server(extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """moto's S3 server on a free 127.0.0.1 port for the duration; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, **(extra_env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)



@contextlib.contextmanager
def frozen_garbage() -> Iterator[None]:
    """Around code that forks this process, which may hold a Ray driver: collect garbage, then
    freeze every object, so a child never frees an inherited Ray object (its lock may have been
    held by a Ray thread at fork time: a child deadlocked that way in CI)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def descendants(pid: int) -> list[int]:
    """Process ids below `pid` (children, grandchildren, ...), from /proc: the processes a test started."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        kids = [p for p, pp in parent.items() if pp == current]
        found += kids
        todo += kids
    return found


def process_title(pid: int) -> str:
    """A process's command line as `ps` shows it (Ray names its processes `ray::<Name>`)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
