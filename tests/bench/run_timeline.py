"""`python tests/bench/run_timeline.py JOB.yaml [--num-cpus 2]`: where a `tokenmill run`'s fixed cost goes.

Runs the job in this process (run_job, an embedded Ray unless the spec's output already has
work done) and prints, in seconds from the start, when imports end, when Ray starts and is up,
when the actor pool exists, when the first unit starts and the last commits (from the ledger)
and when run_job returns. Results: docs/benchmarks.md (text pipeline, run 5).
"""
from __future__ import annotations

import argparse
import time

T0 = time.time()


def mark(what: str) -> None:
    print(f"{time.time() - T0:6.2f} s  {what}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    import ray
    import yaml

    from pipeline import job, runner
    from pipeline.dataset.read import DatasetFolder
    from pipeline.spec import JobSpec
    mark("imports done")
    connect, pool_init, wait = runner.connect, runner.ActorPool.__init__, ray.wait

    def timed_connect(*a, **k):
        mark("Ray: connect starts")
        connect(*a, **k)
        mark("Ray: connected")

    def timed_pool(self, *a, **k):
        pool_init(self, *a, **k)
        mark("actor pool created")
    first = []

    def timed_wait(*a, **k):
        ready = wait(*a, **k)
        if ready[0] and not first:
            first.append(mark("first unit result at the driver"))
        return ready
    runner.connect, runner.ActorPool.__init__, ray.wait = timed_connect, timed_pool, timed_wait
    spec = JobSpec.model_validate(yaml.safe_load(open(args.job)))
    job.run_job(spec, job.RunOptions(num_cpus=args.num_cpus, show_progress=False))
    mark("run_job returned")
    entries = DatasetFolder(spec.sink.uri).ledger().sorted()
    if entries:
        print(f"{min(e.run.started for e in entries) - T0:6.2f} s  first unit started (ledger)")
        print(f"{max(e.run.finished for e in entries) - T0:6.2f} s  last unit committed (ledger)")


if __name__ == "__main__":
    main()
