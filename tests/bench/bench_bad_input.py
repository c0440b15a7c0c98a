"""Bounded memory on bad input: peak RSS of the driver and the workers of `tokenmill run` on a corpus
with a 200 MB line (lines, hf tokenizer: the engine probe reads it too) and on a tar bomb (a
.tar.gz of ten 90 MB members, ~1 MB on disk), both with `limits.max_bytes: 50MiB` as in issue 12.

Peaks are each process's VmHWM from /proc, polled while the run lasts (the driver is the CLI
process; workers are its `ray::UnitWorker` descendants). Not a test: it prints a table.

    python tests/bench/bench_bad_input.py [--workdir /tmp/tm-bench-bad] [--line-mb 200] [--bomb-members 10]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.tm_testing import STDLIB  # noqa: E402


def long_line_corpus(folder: Path, line_mb: int) -> Path:
    """Real stdlib lines, one line of line_mb MB of real text (newlines taken out), more real lines."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [line for p in sorted((STDLIB / "email").rglob("*.py")) for line in p.read_text().splitlines() if line]
    blob = " ".join(lines).encode()
    with open(folder / "web.txt", "wb") as f:
        f.write("\n".join(lines[:2000]).encode() + b"\n")
        left = line_mb * 10**6
        while left > 0:
            f.write(blob[:left])
            left -= min(left, len(blob))
        f.write(b"\n" + "\n".join(lines[2000:]).encode() + b"\n")
    return folder


class _Zeros:
    """A file object of n zero bytes, so writing the bomb never holds a member."""

    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return b"\0" * size


def tar_bomb(folder: Path, members: int, member_mb: int = 90) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bomb.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=9) as tar:
        for i in range(members):
            info = tarfile.TarInfo(f"sample{i:02d}.bin")
            info.size = member_mb * 10**6
            tar.addfile(info, _Zeros(info.size))
        info = tarfile.TarInfo("good.bin")
        data = (STDLIB / "csv.py").read_bytes()
        info.size = len(data)
        tar.addfile(info, __import__("io").BytesIO(data))
    return path


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, out, stack = _children(), [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(tree.get(p, []))
    return out


def _status(pid: int) -> tuple[str, int, int]:
    """(command line, VmHWM, VmRSS) in bytes."""
    cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    kib = lambda key: int(fields.get(key, "0 kB").split()[0]) * 1024  # noqa: E731
    return cmd, kib("VmHWM"), kib("VmRSS")


def measured_run(job: Path) -> dict:
    """Run the job with an embedded 2-CPU Ray; peak RSS per process, polled every 0.1 s."""
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(job), "--quiet", "--num-cpus", "2"]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    names: dict[int, set[str]] = {}  # every title a process had (an idle Ray worker becomes ray::UnitWorker)
    tree_peak = 0
    start = time.time()
    while proc.poll() is None:
        total = 0
        for pid in _descendants(proc.pid):
            try:
                name, hwm, rss = _status(pid)
            except (OSError, ValueError):
                continue
            total += rss
            peaks[pid] = max(hwm, peaks.get(pid, 0))
            names.setdefault(pid, set()).add(name)
        tree_peak = max(tree_peak, total)
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    workers = [hwm for pid, hwm in peaks.items() if any("UnitWorker" in n for n in names[pid])]
    return {"exit": proc.returncode, "seconds": round(time.time() - start, 1), "driver": peaks[proc.pid],
            "worker_max": max(workers, default=0), "workers": len(workers), "tree_rss_peak": tree_peak,
            "summary": stdout.strip().splitlines()[:4], "stderr": stderr[-1500:]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="/tmp/tm-bench-bad")
    parser.add_argument("--line-mb", type=int, default=200)
    parser.add_argument("--bomb-members", type=int, default=10)
    args = parser.parse_args()
    root = Path(args.workdir)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    long_line_corpus(root / "text", args.line_mb)
    tar_bomb(root / "tars", args.bomb_members)
    tok = root / "tok.json"
    subprocess.run([sys.executable, "-m", "pipeline.cli", "train", "--input", str(STDLIB / "json"), "--modality",
                    "code", "--vocab-size", "2000", "--output", str(tok)], cwd=REPO, check=True, capture_output=True)
    jobs = {
        f"lines, one {args.line_mb} MB line, hf": "source: {uri: text, format: lines, limits: {max_bytes: 50MiB}}\n"
                                                  f"tokenizer: {{kind: hf, path: {tok}}}\n",
        f"webdataset, {args.bomb_members} x 90 MB members": "source: {uri: tars, format: webdataset, modality: binary, "
                                                            "limits: {max_bytes: 50MiB}}\ntokenizer: {kind: bytes}\n"}
    print("| corpus (limits.max_bytes 50MiB) | exit | s | driver peak MiB | worker peak MiB (largest) "
          "| all processes (Ray's included), peak of summed RSS MiB |")
    print("|---|---|---|---|---|---|")
    for i, (title, body) in enumerate(jobs.items()):
        job = root / f"job{i}.yaml"
        job.write_text(f"name: bench{i}\n{body}sink: {{uri: out{i}}}\nresources: {{workers: 2}}\nreport: false\n")
        r = measured_run(job)
        mib = lambda b: f"{b / 2**20:,.0f}"  # noqa: E731
        print(f"| {title} | {r['exit']} | {r['seconds']} | {mib(r['driver'])} | {mib(r['worker_max'])} "
              f"| {mib(r['tree_rss_peak'])} |")
        errors = json.loads((root / f"out{i}" / "dataset.json").read_text())["totals"]
        print(f"|   {errors['n_samples']} samples committed, {errors['n_errors']} quarantined | | | | | |")
        if r["exit"] not in (0, 3):
            print(r["stderr"], file=sys.stderr)


if __name__ == "__main__":
    main()
