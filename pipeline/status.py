"""`tokenmill status OUT`: committed and pending units, counts and throughput, during or after a run."""
from __future__ import annotations

import json
import time
from typing import Any

from pipeline.errors import OutputError
from pipeline.ledger import Ledger, read_index
from pipeline.storage import Storage


def dataset_status(out: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Progress from the run state file and the ledger (no Ray needed)."""
    storage = Storage(out, storage_options)
    try:
        state = json.loads(storage.read_bytes("_run.json"))
    except FileNotFoundError:
        state = None
    index = read_index(storage)
    if state is None and index is None:
        raise OutputError(f"{out} is not a tokenmill dataset (no dataset.json or _run.json)")
    if state and state.get("state") == "running" and not _driver_alive(storage):
        state = {**state, "state": "interrupted (its driver is gone; run the job again to resume)"}
    entries = list(Ledger(storage).entries().values())
    started = (state or {}).get("started", 0.0)
    this_run = [e for e in entries if e["run"]["started"] >= started - 1e-6]
    n_bytes = sum(e["n_bytes"] for e in this_run)
    finished = (state or {}).get("finished") or time.time()
    todo = (state or {}).get("units_todo", 0)
    unfinished = (state or {}).get("state", "").startswith(("running", "interrupted"))
    return {
        "output": out, "state": (state or {}).get("state", "finished"),
        "units_total": (state or {}).get("units_total", len(entries)),
        "units_committed": len(entries), "units_committed_this_run": len(this_run),
        "units_pending": max(0, todo - len(this_run)) if unfinished else 0,
        "samples": sum(e["n_samples"] for e in entries), "tokens": sum(e["n_tokens"] for e in entries),
        "errors": sum(e["n_errors"] for e in entries),
        "run_mb_s": round(n_bytes / max(finished - started, 1e-9) / 1e6, 3) if this_run else 0.0,
        "index_totals": (index or {}).get("totals"),
    }


def _driver_alive(storage: Storage) -> bool:
    """Whether the run that wrote _run.json still holds the output's lease."""
    from pipeline.lock import LOCK, holder_alive
    try:
        return holder_alive(json.loads(storage.read_bytes(LOCK)))
    except (FileNotFoundError, ValueError):
        return False


def format_status(s: dict[str, Any]) -> str:
    lines = [f"{s['output']}: {s['state']}",
             f"  units: {s['units_committed']}/{s['units_total']} committed, {s['units_pending']} pending "
             f"({s['units_committed_this_run']} in the latest run)",
             f"  samples {s['samples']:,}, tokens {s['tokens']:,}, quarantined {s['errors']}, "
             f"latest run {s['run_mb_s']} MB/s"]
    return "\n".join(lines)
