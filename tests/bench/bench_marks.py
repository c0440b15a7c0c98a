"""`python tests/bench/bench_marks.py [--workdir /tmp/tokenmill-bench] [--unit-mb 26] [--repeats 9]`: EOS insertion.

On one unit of the text bench's corpus (tests/bench/bench_text.py builds corpus and tokenizer under --workdir), the
unit's gigatoken calls (BATCH_DOCS documents or BATCH_BYTES of text each, one thread) are made once; then EOS is put
after every document by np.insert (the earlier way) and by tokenizers.base.insert_each, alternately --repeats
times. Prints both medians and checks the ids are identical. Results: docs/benchmarks.md (text, run 9).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("RAYON_NUM_THREADS", "1")  # as the runner sets it for a one-CPU worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/tokenmill-bench")
    parser.add_argument("--unit-mb", type=float, default=26.0)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    import numpy as np
    from pipeline.plan import make_plan
    from pipeline.sources.lines import read_jsonl
    from pipeline.spec import JobSpec
    from pipeline.tokenizers.base import insert_each
    from pipeline.tokenizers.gigatoken_engine import flat_arrays, gigatoken_engine
    from pipeline.unit import BATCH_BYTES, BATCH_DOCS
    from tests.bench.bench_text import bench_inputs, bench_spec
    workdir = Path(args.workdir)
    corpus, tokenizer = bench_inputs(workdir)
    spec = JobSpec.model_validate(bench_spec(corpus, tokenizer, workdir / "out-bench-marks", "gigatoken", 1,
                                             int(args.unit_mb * 2**20)))
    units = make_plan(spec)
    texts = [r.data for r in read_jsonl(units[min(1, len(units) - 1)], spec.source) if isinstance(r.data, str)]
    encode, _ = gigatoken_engine(tokenizer)
    calls, batch, size = [], [], 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if len(batch) >= BATCH_DOCS or size >= BATCH_BYTES:
            calls.append(flat_arrays(encode(batch)))
            batch, size = [], 0
    if batch:
        calls.append(flat_arrays(encode(batch)))
    ways = {"np.insert": lambda v, o: np.insert(v, o[1:], np.uint32(0)),
            "insert_each": lambda v, o: insert_each(v, o, 0, after=True)}
    for v, o in calls:
        assert np.array_equal(ways["np.insert"](v, o), ways["insert_each"](v, o)), "the two ways differ"
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, way in ways.items():
            start = time.perf_counter()
            for v, o in calls:
                way(v, o)
            times[name].append((time.perf_counter() - start) * 1e3)
    n_tokens = sum(len(v) for v, _ in calls)
    print(f"{len(calls)} engine calls, {n_tokens:,} tokens, {len(texts):,} documents; ids identical")
    for name, ms in times.items():
        print(f"{name:12s} median {np.median(ms):6.1f} ms (min {min(ms):.1f}, max {max(ms):.1f})")
    print(f"insert_each / np.insert: {np.median(times['insert_each']) / np.median(times['np.insert']):.2f}x")


if __name__ == "__main__":
    main()
