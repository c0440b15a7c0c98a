"""`tokenmill status OUT`: committed and pending units, counts and throughput, during or after a run."""
from __future__ import annotations

import json
import time
from typing import Any

from pipeline.dataset import layout
from pipeline.dataset.read import DatasetFolder
from pipeline.errors import OutputError
from pipeline.rates import mb_per_s


def dataset_status(out: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Progress from the run state file and the ledger (no Ray needed); names what it could not use."""
    folder = DatasetFolder(out, storage_options)
    state = folder.run_state()
    index, index_problem = folder.index_or_problem()
    if state is None and index is None and index_problem is None:
        raise OutputError(f"{out} is not a tokenmill dataset (no {layout.INDEX} or {layout.RUN_STATE})")
    state_name = state.state if state else "finished"
    if state and state.state == "running" and not _driver_alive(folder):
        state_name = "interrupted (its driver is gone; run the job again to resume)"
    elif state and state.state == "failed":
        state_name = f"failed ({state.error or 'no reason recorded'}; run the job again to resume)"
    scan = folder.ledger()
    entries = list(scan.entries.values())
    started = state.started if state else 0.0
    this_run = [e for e in entries if e.run.started >= started - 1e-6]
    finished = (state.finished if state else None) or time.time()
    unfinished = state_name.startswith(("running", "interrupted", "failed"))  # failed: stopped before its end
    problems = _problems(index, index_problem, scan.problems, entries, running=unfinished)
    if problems and state_name == "finished":
        state_name = "finished, with problems (below)"
    return {
        "output": out, "state": state_name,
        "units_total": state.units_total if state else len(entries),
        "units_committed": len(entries), "units_committed_this_run": len(this_run),
        "units_pending": max(0, state.units_todo - len(this_run)) if state and unfinished else 0,
        "units_invalid": len(scan.problems),
        "samples": sum(e.n_samples for e in entries), "tokens": sum(e.n_tokens for e in entries),
        "errors": sum(e.n_errors for e in entries), "empty": sum(e.n_empty for e in entries),
        "run_mb_s": mb_per_s(sum(e.n_bytes for e in this_run), finished - started) if this_run else 0.0,
        "nothing_to_do": bool(state) and state.units_todo == 0,
        "units_reformatted": int(((state.summary or {}) if state else {}).get("units_reformatted", 0)),
        "index_totals": index.totals.to_json() if index else None,
        "problems": problems,
        "foreign": folder.foreign(),
    }


def _problems(index, index_problem: str | None, ledger_problems: dict[str, str], entries: list,
              running: bool = False) -> list[str]:
    """What the next run will repair, one line each (a run under way has no index yet: not a problem)."""
    out = [index_problem] if index_problem else []
    if index is None and index_problem is None and entries and not running:
        out.append(f"no {layout.INDEX}: the ledger holds {len(entries)} committed units, but no index names them")
    return out + sorted(ledger_problems.values())


def _driver_alive(folder: DatasetFolder) -> bool:
    """Whether the run that wrote _run.json still holds the output's lease."""
    from pipeline.lock import holder_alive
    try:
        return holder_alive(json.loads(folder.storage.read_bytes(layout.LOCK)), folder.storage)
    except (FileNotFoundError, ValueError):
        return False


def format_status(s: dict[str, Any]) -> str:
    from pipeline.humanize import sig3
    if s["nothing_to_do"] and s.get("units_reformatted"):
        latest = f"latest run: nothing tokenized, {s['units_reformatted']} units given the spec's formats"
    else:
        latest = "latest run: nothing to do" if s["nothing_to_do"] else f"latest run {sig3(s['run_mb_s'])} MB/s"
    lines = [f"{s['output']}: {s['state']}",
             f"  units: {s['units_committed']}/{s['units_total']} committed, {s['units_pending']} pending"
             + (f", {s['units_invalid']} with an invalid ledger entry" if s["units_invalid"] else "")
             + f" ({s['units_committed_this_run']} committed in the latest run)",
             f"  samples {s['samples']:,}, tokens {s['tokens']:,}, quarantined {s['errors']:,}, "
             f"empty (skipped) {s.get('empty', 0):,}, {latest}"]
    lines += [f"  problem: {p}" for p in s["problems"]]
    if s["problems"]:
        lines.append("  run the job again: it " + ("redoes those units and rebuilds the index" if s["units_invalid"]
                                                 else "rebuilds the index from the ledger"))
    if s["foreign"]:
        lines.append(f"  not tokenmill's (left as they are): {', '.join(s['foreign'])}")
    return "\n".join(lines)
