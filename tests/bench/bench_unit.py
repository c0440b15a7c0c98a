"""`python tests/bench/bench_unit.py [--unit-mb 26] [--units 4] [--keep-freed-memory]`: one worker's units, no Ray.

Runs UnitProcessor (what a Ray worker runs) in this process on the text bench's corpus and
tokenizer (tests/bench/bench_text.py builds them under --workdir), gigatoken, one thread, and
prints each unit's phases (run.phases) and the MB/s over all units. --keep-freed-memory applies
runner.keep_freed_memory first, as a worker does. Results: docs/benchmarks.md (text, run 5).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("RAYON_NUM_THREADS", "1")  # as the runner sets it for a one-CPU worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/tokenmill-bench")
    parser.add_argument("--unit-mb", type=float, default=26.0)
    parser.add_argument("--units", type=int, default=4)
    parser.add_argument("--keep-freed-memory", action="store_true")
    args = parser.parse_args()
    from pipeline.runner import keep_freed_memory
    if args.keep_freed_memory:
        print("keep_freed_memory applied:", keep_freed_memory())
    from pipeline.plan import make_plan
    from pipeline.spec import JobSpec
    from pipeline.unit import UnitProcessor
    from tests.bench.bench_text import bench_inputs, bench_spec
    workdir = Path(args.workdir)
    corpus, tokenizer = bench_inputs(workdir)
    out = workdir / "out-bench-unit"
    shutil.rmtree(out, ignore_errors=True)
    spec = JobSpec.model_validate(bench_spec(corpus, tokenizer, out, "gigatoken", 1, int(args.unit_mb * 2**20)))
    units = make_plan(spec)[:args.units]
    processor = UnitProcessor(spec, "gigatoken")
    start, n_bytes = time.perf_counter(), 0
    for unit in units:
        entry = processor(unit)
        n_bytes += entry.n_bytes
        print(f"{entry.n_bytes / 1e6:6.1f} MB in {entry.run.seconds:.3f} s:",
              ", ".join(f"{k} {v:.3f}" for k, v in entry.run.phases.items()))
    print(f"{n_bytes / (time.perf_counter() - start) / 1e6:.1f} MB/s over {len(units)} units")


if __name__ == "__main__":
    main()
