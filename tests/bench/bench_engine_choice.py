"""Why the runner is a plain Ray actor pool: the same units through (a) tokenmill's pool and
(b) Ray Data's actor-pool `map_batches`, in one process on one local Ray, with identical shards.

    python tests/bench/bench_engine_choice.py --corpus DIR --tokenizer tokenizer.json [--engine tiktoken]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def spec_for(corpus: str, tokenizer: str, out: str, engine: str):
    from pipeline.spec import parse_spec
    return parse_spec({"name": "choice", "source": {"uri": corpus, "modality": "code", "unit_bytes": "2MiB"},
                       "tokenizer": {"kind": "hf", "path": tokenizer, "engine": engine},
                       "sink": {"uri": out, "formats": ["arrow"]}, "resources": {"workers": 2}, "report": False})


class UnitMapper:
    """Ray Data callable class: one UnitProcessor per actor, one unit per row."""

    def __init__(self, spec, engine: str) -> None:
        from pipeline.unit import UnitProcessor
        self.processor = UnitProcessor(spec, engine)

    def __call__(self, batch):
        from pipeline.plan import WorkUnit
        entries = [self.processor(WorkUnit.from_json(json.loads(u))) for u in batch["unit"]]
        return {"n_bytes": [e["n_bytes"] for e in entries]}


def main() -> None:
    import ray

    from pipeline.plan import make_plan
    from pipeline.runner import run_units
    p = argparse.ArgumentParser()
    p.add_argument("--corpus", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--engine", default="tiktoken")
    args = p.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        pool_spec = spec_for(args.corpus, args.tokenizer, f"{tmp}/pool", args.engine)
        data_spec = spec_for(args.corpus, args.tokenizer, f"{tmp}/data", args.engine)
        units = make_plan(pool_spec)
        n_bytes = sum(u.n_bytes for u in units)
        start = time.perf_counter()
        run_units(pool_spec, units, args.engine)
        pool_s = time.perf_counter() - start
        start = time.perf_counter()
        ds = ray.data.from_items([{"unit": json.dumps(u.to_json())} for u in units], override_num_blocks=len(units))
        ds.map_batches(UnitMapper, fn_constructor_args=(data_spec, args.engine), batch_size=1,
                       concurrency=2, num_cpus=0.5).materialize()
        data_s = time.perf_counter() - start
        same = sorted(p.read_bytes() for p in Path(f"{tmp}/pool/shards").iterdir()) == \
            sorted(p.read_bytes() for p in Path(f"{tmp}/data/shards").iterdir())
    mb = n_bytes / 1e6
    print(f"{len(units)} units, {mb:.1f} MB, engine {args.engine}, 2 workers; identical shards: {same}")
    print(f"actor pool (runner.run_units): {pool_s:.1f} s, {mb / pool_s:.2f} MB/s (actor start-up included)")
    print(f"Ray Data map_batches actor pool: {data_s:.1f} s, {mb / data_s:.2f} MB/s")
    print(f"ratio pool / Ray Data throughput: {data_s / pool_s:.2f}x")


if __name__ == "__main__":
    main()
