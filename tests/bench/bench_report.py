"""Benchmark: report time on a dataset and on one 10x larger (`python -m tests.bench.bench_report`).

Both datasets are real stdlib modules tokenized by tests/report/fixtures.py (2 worker
processes, like a small run). Prints a markdown table: samples, tokens, shards, the run's
own time from its ledger, compute_stats and write_report times (best of --repeat), and the
report time as a share of the run. Not a test: wall-clock numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from pipeline.report import compute_stats, write_report
from tests.report.fixtures import make_dataset

log = logging.getLogger("bench_report")


def best_of(repeat: int, fn) -> tuple[float, float, object]:
    """Smallest wall and CPU (all threads) times of `repeat` calls, and the last result."""
    wall, cpu, result = [], [], None
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    return min(wall), min(cpu), result


def measure(root: Path, n_code: int, files_per_unit: int, repeat: int) -> dict:
    """Build one dataset and time the report on it."""
    ds = make_dataset(root, n_code=n_code, n_docs=6, files_per_unit=files_per_unit)
    stats_s, stats_cpu, stats = best_of(repeat, lambda: compute_stats(str(ds.out)))
    report_s, report_cpu, _ = best_of(repeat, lambda: write_report(str(ds.out)))
    run_s = stats["throughput"]["latest"]["seconds"]
    t = stats["totals"]
    return {"samples": t["n_samples"], "tokens": t["n_tokens"], "shards": t["n_shards"], "MB": t["n_bytes"] / 1e6,
            "run_s": run_s, "stats_s": stats_s, "stats_cpu": stats_cpu, "report_s": report_s,
            "report_cpu": report_cpu, "share": report_s / run_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--base", type=int, default=150, help="code files in the small dataset")
    p.add_argument("--scale", type=int, default=10)
    p.add_argument("--files-per-unit", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for n in (args.base, args.base * args.scale):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(Path(tmp), n, args.files_per_unit, args.repeat))
    print("| samples | tokens | shards | input MB | run s (ledger) | compute_stats s (CPU s) "
          "| write_report s (CPU s) | report / run |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['samples']:,} | {r['tokens']:,} | {r['shards']} | {r['MB']:.1f} | {r['run_s']:.1f} | "
              f"{r['stats_s']:.2f} ({r['stats_cpu']:.2f}) | {r['report_s']:.2f} ({r['report_cpu']:.2f}) | "
              f"{100 * r['share']:.1f}% |")
    growth = rows[1]["report_s"] / rows[0]["report_s"]
    print(f"\nreport time x{growth:.2f} for x{rows[1]['tokens'] / rows[0]['tokens']:.1f} tokens")


if __name__ == "__main__":
    main()
