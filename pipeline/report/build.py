"""Dataset statistics (dask) and the HTML report: `tokenmill report OUT` and `tokenmill stats OUT --json`.

`compute_stats` returns plain JSON-ready numbers; `write_report` renders the same numbers
into OUT/report.html. OUT is read by pipeline.dataset.read; here: stats (the dask graph),
summary / throughput (numbers), plots + html (the page).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from pipeline.dataset import layout
from pipeline.dataset.read import Dataset, DatasetError, open_dataset
from pipeline.report import summary
from pipeline.report.about import describe
from pipeline.report.fmt import plural, sig
from pipeline.report.stats import (
    ReadContext,
    check_group_by,
    common_prefix,
    compute_shard_stats,
)
from pipeline.report.throughput import throughput
from pipeline.report.tokens import vocabulary

log = logging.getLogger(__name__)

REPORT_NAME = layout.REPORT


def _context(ds: Dataset, group_by: str) -> ReadContext:
    uris = [i.uri for e in ds.ledger for i in e.inputs]
    return ReadContext(uri=ds.uri, storage_options=dict(ds.folder.storage.storage_options), group_by=group_by,
                       prefix=common_prefix(uris), base_vocab_size=ds.base_vocab_size)


def compute_stats(out_dir: str, *, group_by: str = "folder", storage_options: dict | None = None) -> dict:
    """Statistics of the dataset in out_dir as JSON-serializable numbers (see docs/report.md)."""
    check_group_by(group_by)
    return _stats(open_dataset(out_dir, storage_options), str(out_dir), group_by)


def _stats(ds: Dataset, out_dir: str, group_by: str, began: float | None = None) -> dict:
    began = time.perf_counter() if began is None else began
    refs, missing = ds.shard_refs()
    for m in missing:
        log.warning("shard %s is in dataset.json but missing from disk: %s", m["name"], m["paths"])
    res = compute_shard_stats(ds, refs, _context(ds, group_by)) if refs else None
    words = vocabulary(ds)
    stats = {
        "dataset": describe(ds, out_dir, words), "group_by": group_by,
        "totals": summary.totals(res, ds.index, missing), "index_totals": ds.index.totals.to_json(),
        "missing_shards": missing, "mismatched_shards": summary.shard_mismatches(res, ds.index, missing),
        "groups": summary.group_rows(res["groups"], "group") if res else [],
        "modalities": summary.group_rows(res["modalities"], "modality") if res else [],
        "lengths": summary.lengths(res), "longest": summary.longest(res), "vocab": summary.vocab(res, ds, words),
        "dynamic": summary.dynamic(res), "errors": summary.errors(ds.folder.errors()),
        "throughput": throughput(ds.ledger, ds.folder.run_state()),
    }
    stats["report"] = _timing(time.perf_counter() - began, stats["throughput"])
    return stats


def _timing(seconds: float, th: dict) -> dict:
    """The statistics' own time beside the latest run's: spec to index (_run.json), else its units' span."""
    state, latest = th.get("run_state"), th.get("latest")
    if state and state["seconds"] is not None:
        span, run = "run", state["seconds"]
    else:
        span, run = ("units", latest["seconds"]) if latest else (None, None)
    return {"seconds": seconds, "run_seconds": run, "run_span": span,
            "share_of_run": seconds / run if run else None}


def write_report(out_dir: str, *, group_by: str = "folder", storage_options: dict | None = None) -> str:
    """Compute the statistics and write OUT/report.html (one self-contained file); returns its path."""
    check_group_by(group_by)
    began = time.perf_counter()
    ds = open_dataset(out_dir, storage_options)
    stats = _stats(ds, str(out_dir), group_by, began)
    from pipeline.report.html import (
        render,  # matplotlib loads only when a page is drawn
    )
    page = render(stats, began).encode("utf-8")
    ds.folder.storage.write_atomic(REPORT_NAME, page)
    path = ds.path(REPORT_NAME) if "://" not in str(out_dir) else f"{str(out_dir).rstrip('/')}/{REPORT_NAME}"
    log.info("report written: %s (%d bytes, stats in %.2f s)", path, len(page), stats["report"]["seconds"])
    return path


def _storage_options(text: str | None) -> dict | None:
    if not text:
        return None
    options = json.loads(text)
    if not isinstance(options, dict):
        raise ValueError("--storage-options takes a JSON object, e.g. '{\"anon\": true}'")
    return options


def _run(fn, args: argparse.Namespace):
    try:
        return fn(args.out, group_by=args.group_by, storage_options=_storage_options(args.storage_options))
    except (DatasetError, ValueError) as err:
        sys.stderr.write(f"tokenmill: {err}\n")
        return None


def cli_report(args: argparse.Namespace) -> int:
    """`tokenmill report OUT`: write OUT/report.html and print its path."""
    path = _run(write_report, args)
    if path is None:
        return 2
    sys.stdout.write(f"{path}\n")
    return 0


def cli_stats(args: argparse.Namespace) -> int:
    """`tokenmill stats OUT [--json]`: the report's numbers, as JSON or a short text summary."""
    stats = _run(compute_stats, args)
    if stats is None:
        return 2
    sys.stdout.write(summary.dumps(stats) + "\n" if args.json else text_summary(stats))
    return 0


def text_summary(s: dict) -> str:
    """A few lines for a terminal: totals and the per-group table."""
    t = s["totals"]
    lines = [(f"{s['dataset']['path']}: {plural(t['n_shards'], 'shard')}, {plural(t['n_samples'], 'sample')}, "
              f"{plural(t['n_tokens'], 'token')}, {plural(t['n_bytes'], 'input byte')}, "
              f"{plural(s['errors']['n_errors'], 'input')} quarantined, {s['errors']['n_empty']:,} empty (skipped)"),
             *[f"missing shard: {m['name']}" for m in s["missing_shards"]],
             f"{s['group_by']:<32} {'samples':>10} {'tokens':>14} {'bytes/token':>12}"]
    for r in s["groups"]:
        bpt = sig(r["bytes_per_token"]) if r["bytes_per_token"] else "-"
        lines.append(f"{r['group'][:32]:<32} {r['n_samples']:>10,} {r['n_tokens']:>14,} {bpt:>12}")
    return "\n".join(lines) + "\n"
