"""Planner scale: plan time and peak memory for 10k .. 1M input objects (generated listing),
plus listing through fsspec's memory filesystem up to 100k. Prints growth ratios.

    python tests/bench/bench_plan.py [--max 1000000]
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

from pipeline.plan import InputFile, cut_units, list_inputs
from pipeline.spec import parse_spec


def spec(uri: str):
    return parse_spec({"name": "bench", "source": {"uri": uri, "format": "files", "unit_bytes": "64MiB"},
                       "tokenizer": {"kind": "bytes"}, "sink": {"uri": "/tmp/unused"}})


def listing(n: int) -> list[InputFile]:
    """n objects of 4-400 KiB with S3-like keys and etags, sorted as a listing is."""
    files = [InputFile(f"s3://corpus/shard{i // 10000:04d}/doc{i:09d}.txt", 4096 + (i * 7919) % 409600, f"etag{i:x}")
             for i in range(n)]
    return sorted(files, key=lambda f: f.uri)


def measure(fn):
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max", type=int, default=1_000_000)
    args = parser.parse_args()
    s = spec("s3://corpus/")
    rows = []
    n = 10_000
    while n <= args.max:
        files = listing(n)
        units, seconds, peak = measure(lambda: cut_units(s, files))
        rows.append((n, len(units), seconds, peak))
        n *= 10
    print("| objects | units | plan s | peak MiB (cut_units) | s per 1k objects |")
    print("|---|---|---|---|---|")
    for n, u, sec, peak in rows:
        print(f"| {n:,} | {u:,} | {sec:.2f} | {peak / 2**20:.1f} | {sec / n * 1000:.4f} |")
    base = rows[0]
    for n, _, sec, peak in rows[1:]:
        print(f"{n // base[0]}x objects -> {sec / base[2]:.1f}x time, {peak / base[3]:.1f}x memory")
    import fsspec
    mem = fsspec.filesystem("memory")
    for n in (10_000, 100_000):
        mem.store.clear()
        for i in range(n):
            mem.store[f"/corpus/d{i // 1000:03d}/f{i:07d}.txt"] = fsspec.implementations.memory.MemoryFile(
                mem, f"/corpus/d{i // 1000:03d}/f{i:07d}.txt", b"x" * 100)
        found, seconds, peak = measure(lambda: list_inputs(["memory://corpus"]))
        print(f"memory-fs listing of {len(found):,} objects: {seconds:.2f} s, peak {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
