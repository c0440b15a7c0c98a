"""Run speed from the ledger and _run.json: runs, throughput over time, and per worker (host:pid).

Three spans, each named where it is shown, because they differ by 10x on a small job, in
the CLI's words:
- the run: `tokenmill run` from spec to index written (_run.json; planning, Ray start-up,
  engine probe, units, index and cleanup; not the report, written after it: the CLI's
  "total ... for the whole command" adds that);
- the units: first unit start to last unit commit (the CLI's "while units ran");
- busy: the sum of unit times, per worker its own (MB/s while that worker was busy).
The latest run's units are the ledger entries that started after it did; earlier ones are
split into runs by idle gaps longer than RUN_GAP_S, so a nightly folder shows each night
apart. A unit's bytes and tokens are spread evenly over its own interval, which gives the
rate over time without any per-sample timestamps.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from pipeline.dataset.records import COUNTS, LedgerEntry, RunState
from pipeline.rates import rate

RUN_GAP_S = 300.0
N_TIME_BINS = 40


def _units(ledger: list[LedgerEntry]) -> list[dict]:
    """Ledger entries with usable times, as flat records sorted by start."""
    out = []
    for e in ledger:
        start, end = e.run.started, e.run.finished
        if end < start:
            continue
        out.append({"start": start, "end": end, "seconds": e.run.seconds or end - start,
                    "worker": f"{e.run.host or '?'}:{e.run.pid or '?'}",
                    **{k: getattr(e, k) for k in COUNTS}})
    return sorted(out, key=lambda u: u["start"])


def split_runs(units: list[dict], gap_s: float = RUN_GAP_S) -> list[list[dict]]:
    """Group units (sorted by start) into runs separated by idle gaps longer than gap_s."""
    runs: list[list[dict]] = []
    end = -np.inf
    for u in units:
        if u["start"] - end > gap_s:
            runs.append([])
        runs[-1].append(u)
        end = max(end, u["end"])
    return runs


def run_summary(units: list[dict]) -> dict:
    """Totals and rates of one run; rates are over its units' span (first start to last commit)."""
    start, end = min(u["start"] for u in units), max(u["end"] for u in units)
    wall = end - start
    sums = {k: sum(u[k] for u in units) for k in COUNTS}
    return {"started": start, "seconds": wall, "busy_seconds": sum(u["seconds"] for u in units),
            "n_units": len(units), "n_workers": len({u["worker"] for u in units}), **sums,
            "bytes_per_second": rate(sums["n_bytes"], wall), "tokens_per_second": rate(sums["n_tokens"], wall)}


def workers(units: list[dict]) -> list[dict]:
    """Per worker: units, busy seconds, bytes, tokens and its own rate while busy."""
    acc: dict[str, dict] = defaultdict(lambda: {"n_units": 0, "busy_seconds": 0.0, "n_bytes": 0, "n_tokens": 0})
    for u in units:
        w = acc[u["worker"]]
        w["n_units"] += 1
        w["busy_seconds"] += u["seconds"]
        w["n_bytes"] += u["n_bytes"]
        w["n_tokens"] += u["n_tokens"]
    return [{"worker": name, **w, "bytes_per_second": rate(w["n_bytes"], w["busy_seconds"])}
            for name, w in sorted(acc.items())]


def timeline(units: list[dict], n_bins: int = N_TIME_BINS) -> list[dict]:
    """Bytes/s and tokens/s in n_bins equal slices of the run, each unit spread over its interval."""
    start = np.array([u["start"] for u in units])
    end = np.array([u["end"] for u in units])
    t0, t1 = start.min(), end.max()
    if t1 <= t0:
        return []
    edges = np.linspace(t0, t1, n_bins + 1)
    lo, hi = np.maximum(start[:, None], edges[None, :-1]), np.minimum(end[:, None], edges[None, 1:])
    overlap = np.clip(hi - lo, 0, None)
    span = np.maximum(end - start, 1e-9)[:, None]
    share = np.where((end - start)[:, None] > 0, overlap / span, (start[:, None] >= edges[None, :-1]) *
                     (start[:, None] < edges[None, 1:]))
    width = edges[1] - edges[0]
    nbytes = (share * np.array([u["n_bytes"] for u in units])[:, None]).sum(0) / width
    ntoks = (share * np.array([u["n_tokens"] for u in units])[:, None]).sum(0) / width
    return [{"t": float(edges[i] - t0), "bytes_per_second": float(nbytes[i]), "tokens_per_second": float(ntoks[i])}
            for i in range(n_bins)]


def split_at_run_start(units: list[dict], state: RunState | None) -> list[list[dict]]:
    """Runs: the units before the latest run started split by idle gaps, then that run's own units."""
    if state is None:
        return split_runs(units)
    before = [u for u in units if u["start"] < state.started]
    after = [u for u in units if u["start"] >= state.started]
    return split_runs(before) + ([after] if after else [])


def latest_run(state: RunState | None, units: list[dict]) -> dict | None:
    """The latest `tokenmill run` as _run.json records it, with the bytes of the units it ran.

    A run still going, or killed, has no finish time: its seconds and rate are None.
    """
    if state is None:
        return None
    mine = [u for u in units if u["start"] >= state.started]
    n_bytes = sum(u["n_bytes"] for u in mine)
    seconds = None if state.finished is None else state.finished - state.started
    return {"started": state.started, "finished": state.finished, "seconds": seconds, "state": state.state,
            "units_total": state.units_total, "units_run": state.units_todo, "n_units_in_ledger": len(mine),
            "n_bytes": n_bytes, "n_tokens": sum(u["n_tokens"] for u in mine),
            "bytes_per_second": rate(n_bytes, seconds) if mine and seconds is not None else None}


def throughput(ledger: list[LedgerEntry], state: RunState | None = None) -> dict:
    """All runs found in the ledger, the latest run as _run.json has it, and for the latest run
    with units its timeline and workers."""
    units = _units(ledger)
    run_state = latest_run(state, units)
    if not units:
        return {"n_units": 0, "runs": [], "latest": None, "run_state": run_state}
    runs = split_at_run_start(units, state)
    latest = runs[-1]
    return {"n_units": len(units), "runs": [run_summary(r) for r in runs], "run_state": run_state,
            "latest": {**run_summary(latest), "workers": workers(latest), "timeline": timeline(latest)}}
