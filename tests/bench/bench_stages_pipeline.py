"""The whole pipeline (`run_job`, 2 workers, local Ray) on the same corpus with and without each
text stage, in one process: MB/s and the stage's cost as a share of pipeline throughput.

    python tests/bench/bench_stages_pipeline.py --corpus DIR --tokenizer tokenizer.json [--unit-mb 16] [--format jsonl]
        [--cases "no stage" "dynamic 1024, shard"] [--repeat 2]

With --repeat N the cases run in turn N times and each keeps its best MB/s, so a burst of load
on a shared machine hurts one run of a case, not the comparison. "stage share of unit time" is
the stage's seconds over the units' seconds (both from the ledger) in that best run; "MB/s per
busy worker" is input MB over the units' own seconds (best run): both measure what the stage
costs a busy worker, without the run's start-up and tail.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

CASES = {
    "no stage": [],
    "dynamic 1024, shard": [{"kind": "dynamic", "max_merges": 1024, "scope": "shard"}],
    "spans word": [{"kind": "spans", "unit": "word"}],
    "spans identifier": [{"kind": "spans", "unit": "identifier"}],
}


def steady_mb_s(out: Path) -> tuple[float, dict]:
    """Input MB / (last commit - first unit start), from the ledger; plus summed stage stats."""
    from pipeline.dataset.read import DatasetFolder
    from pipeline.rates import busy_span
    entries = DatasetFolder(str(out)).ledger().sorted()
    span = busy_span(entries)
    stats: dict = {"unit_seconds": sum(e.run.seconds for e in entries),
                   "worker_mb_s": sum(e.n_bytes for e in entries) / sum(e.run.seconds for e in entries) / 1e6}
    for e in entries:
        for stage, values in e.stage_stats.items():
            for k in ("tokens_before", "tokens_after", "seconds"):
                if k in values:
                    stats[k] = stats.get(k, 0) + values[k]
    return sum(e.n_bytes for e in entries) / span / 1e6, stats


def main() -> None:
    import ray

    from pipeline.job import RunOptions, run_job
    from pipeline.spec import parse_spec
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--unit-mb", type=float, default=16)
    p.add_argument("--engine", default="tiktoken")
    p.add_argument("--format", default="files", help="source.format of the corpus (files or jsonl)")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args()
    cases = {name: CASES[name] for name in ["no stage", *[c for c in args.cases if c != "no stage"]]}
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="ERROR")
    results: dict[str, tuple[float, dict]] = {}
    busy: dict[str, float] = {}  # input MB over the units' own seconds: a busy worker's rate, no start or tail
    with tempfile.TemporaryDirectory() as tmp:
        for (name, stages), r in ((c, r) for r in range(args.repeat) for c in cases.items()):
            out = Path(tmp) / f"{name.replace(' ', '_').replace(',', '')}-{r}"
            source = {"uri": args.corpus, "modality": "code", "format": args.format,
                      "unit_bytes": int(args.unit_mb * 2**20)}
            spec = parse_spec({"name": "bench", "source": source,
                               "tokenizer": {"kind": "hf", "path": args.tokenizer, "engine": args.engine},
                               "stages": stages, "sink": {"uri": str(out), "formats": ["arrow"]},
                               "resources": {"workers": 2}, "report": False})
            run_job(spec, RunOptions(show_progress=False))
            mb_s, stats = steady_mb_s(out)
            print(f"run {r + 1}/{args.repeat} {name}: {mb_s:.2f} MB/s, {stats['worker_mb_s']:.2f} MB/s per busy "
                  f"worker", flush=True)
            if mb_s > results.get(name, (0.0, {}))[0]:
                results[name] = (mb_s, stats)
            busy[name] = max(busy.get(name, 0.0), stats["worker_mb_s"])
    base = results["no stage"][0]
    print("| case | pipeline MB/s | cost vs no stage | MB/s per busy worker | cost | stage share of unit time | "
          "effect |\n|---|---|---|---|---|---|---|")
    for name, (mb_s, stats) in results.items():
        effect = ""
        if stats.get("tokens_before"):
            effect = f"{1 - stats['tokens_after'] / stats['tokens_before']:.1%} fewer tokens"
        share = f"{stats['seconds'] / stats['unit_seconds']:.0%}" if "seconds" in stats else ""
        print(f"| {name} | {mb_s:.2f} | {1 - mb_s / base:.0%} | {busy[name]:.2f} | "
              f"{1 - busy[name] / busy['no stage']:.0%} | {share} | {effect} |")


if __name__ == "__main__":
    main()
