"""Render the statistics as one self-contained HTML page: inline CSS, plots as SVG data URIs.

No script, font or style sheet is fetched: the page opens from a file with no network.
Here: the page, its header and alerts, the run speed and the footer; the data sections are
in pipeline.report.sections, the building blocks in pipeline.report.markup.
"""
from __future__ import annotations

import time

from pipeline.report import plots, sections
from pipeline.report.fmt import mb_s, num, pct, plural, seconds, size, when
from pipeline.report.markup import CSS, code, esc, img, note, side_by_side, table

UNITS_WAIT = ("the run's time also holds planning, Ray start-up, the engine probe, writing the index and "
              "cleanup, which on a small job can be most of it")


def header(s: dict) -> str:
    """Title, dataset path, tokenizer, and the summary cards."""
    d, t = s["dataset"], s["totals"]
    tok = d.get("tokenizer", {})
    counted = [(t["n_shards"], "shard"), (t["n_samples"], "sample"), (t["n_tokens"], "token")]
    cards = [(_noun(n, word), num(n)) for n, word in counted]
    cards += [("input bytes", size(t["n_bytes"])), ("bytes / token", num(t["bytes_per_token"])),
              (_noun(s["errors"]["n_errors"], "quarantined input"), num(s["errors"]["n_errors"]))]
    if s["errors"].get("n_empty"):
        cards.append((_noun(s["errors"]["n_empty"], "empty input") + " (skipped)", num(s["errors"]["n_empty"])))
    return (f"<h1>tokenmill report: {esc(d.get('name'))}</h1>"
            f'<p class="sub">{code(d["path"])} · tokenizer {esc(tok.get("kind"))}, '
            f'{plural(tok.get("vocab_size") or 0, "id")}, {esc(d.get("token_dtype"))} · grouped by {esc(s["group_by"])}</p>'
            '<div class="cards">' + "".join(f"<div class=card><b>{v}</b><span>{esc(k)}</span></div>"
                                            for k, v in cards) + "</div>")


def _noun(n: int, word: str) -> str:
    return plural(n, word).split(" ", 1)[1]


def alerts(s: dict) -> str:
    """Missing shards, shards that disagree with the index, and an empty dataset, said plainly."""
    out = []
    if s["totals"]["n_samples"] == 0:
        out.append('<p class="empty">This dataset has no samples: nothing was tokenized'
                   f' ({plural(s["errors"]["n_errors"], "input")} quarantined).</p>')
    missing = s["missing_shards"]
    if missing:
        names = ", ".join(f"{code(m['name'])} ({esc(', '.join(m['paths']))})" for m in missing)
        out.append(f'<div class="alert"><b>{plural(len(missing), "shard")} listed in dataset.json '
                   f'{"is" if len(missing) == 1 else "are"} missing from disk</b> and not counted below: '
                   f"{names}</div>")
    if s["mismatched_shards"]:
        names = ", ".join(code(m["name"]) for m in s["mismatched_shards"])
        out.append(f'<div class="alert"><b>Shards whose contents differ from the index:</b> {names}</div>')
    return "".join(out)


def speed(s: dict) -> str:
    """The latest run and its units, every run in the ledger, throughput over time and per worker."""
    th = s["throughput"]
    latest, state = th["latest"], th.get("run_state")
    if not latest:
        return "<h2>Run speed</h2>" + (_latest_run(state, None) if state else "<p>The ledger holds no timings.</p>")
    runs = table(["run started", "units", "workers", "units ran (s)", "busy (s, all workers)",
                  "input MB/s while units ran", "tokens/s while units ran"],
                 ([when(r["started"]), num(r["n_units"]), num(r["n_workers"]), num(r["seconds"]),
                   num(r["busy_seconds"]), mb_s(r["bytes_per_second"]), num(r["tokens_per_second"])]
                  for r in th["runs"]), numeric={1, 2, 3, 4, 5, 6})
    return ("<h2>Run speed</h2>" + _latest_run(state, latest) + runs
            + note("One row per run found in the ledger (the latest run's units are its own; earlier units more "
                   "than 5 minutes apart are two runs). <i>Units ran</i>: first unit start to last unit commit; "
                   "<i>busy</i>: the units' own seconds added up over all workers. MB/s are decimal megabytes of "
                   "input, as the CLI prints them.")
            + _over_time_and_workers(latest))


def _over_time_and_workers(latest: dict) -> str:
    tl, ws = latest["timeline"], latest["workers"]
    plot = plots.series([p["t"] for p in tl], {"input MB/s": [p["bytes_per_second"] / 1e6 for p in tl]},
                        title="Throughput while the latest run's units ran",
                        xlabel="seconds since the first unit started", ylabel="input MB/s")
    rest = ws[plots.SHOWN:]
    busy = sum(w["busy_seconds"] for w in rest)
    wplot = plots.bars([w["worker"] for w in ws], [(w["bytes_per_second"] or 0) / 1e6 for w in ws],
                       title="Input MB/s per worker while busy (host:pid)", xlabel="input MB/s",
                       others=sum(w["n_bytes"] for w in rest) / busy / 1e6 if busy else 0.0)
    wtable = table(["worker", "units", "busy (s)", "input bytes", "tokens", "input MB/s while busy"],
                   ([w["worker"], num(w["n_units"]), num(w["busy_seconds"]), size(w["n_bytes"]), num(w["n_tokens"]),
                     mb_s(w["bytes_per_second"])] for w in ws), numeric={1, 2, 3, 4, 5})
    return side_by_side(img(plot, "throughput over time") if tl else "", img(wplot, "throughput per worker")) + wtable


def _latest_run(state: dict | None, latest: dict | None) -> str:
    """What the latest `tokenmill run` took, in the CLI's figures and words, and which units the rest describe."""
    if not state:
        return (f"<p>No <code>_run.json</code>: the figures below are the ledger's, of units only "
                f"({UNITS_WAIT}).</p>" if latest else "")
    started = when(state["started"])
    if state["seconds"] is None:
        return (f"<p>The latest <code>tokenmill run</code>, started {started}, has not finished: it is still "
                "running, or it was stopped. The figures below are of the units committed so far.</p>")
    said = [(f"The latest <code>tokenmill run</code>, started {started}, took <b>{seconds(state['seconds'])}</b> "
             f"from spec to {_end(state['state'])}: planning, Ray start-up, the engine probe, the units, the index "
             "and cleanup (the CLI's \"over the run's ... s\"). The report was written after it: the CLI's "
             "\"total ... for the whole command\" adds the report's time, given at the end of this page.")]
    if latest is None or state["n_units_in_ledger"] == 0:
        said.append(f"It had nothing to do: all {plural(state['units_total'], 'unit')} were already committed. "
                    "The figures below are of the last run that committed units.")
    else:
        said.append(f"Over the run it read <b>{mb_s(state['bytes_per_second'])} MB/s</b> of input; while its "
                    f"{plural(latest['n_units'], 'unit')} ran, {seconds(latest['seconds'])} from the first start "
                    f"to the last commit, it read <b>{mb_s(latest['bytes_per_second'])} MB/s</b>, the CLI's "
                    f"\"while units ran\". The two differ because {UNITS_WAIT}.")
    return "<p>" + " ".join(said) + "</p>"


def _end(state: str) -> str:
    return "index written" if state == "finished" else f"its end (<b>{esc(state)}</b>; the units it committed stay)"


def footer(s: dict, drawn_s: float | None = None) -> str:
    """How long the report took, beside the latest run's own time (spec to index, when _run.json has it)."""
    r = s["report"]
    spent = r["seconds"] if drawn_s is None else drawn_s
    what = ("statistics (dask)" if drawn_s is None else
            f"reading the folder, the statistics ({seconds(r['seconds'])}, dask) and drawing the page")
    if not r.get("run_seconds"):
        return f'<p class="sub">This report took {seconds(spent)}: {what}.</p>'
    run = ("the latest <code>tokenmill run</code> took" if r["run_span"] == "run"
           else "the latest run's units ran for")
    return (f'<p class="sub">This report took {seconds(spent)}: {what}. Before it, {run} '
            f"{seconds(r['run_seconds'])}; the report adds {pct(spent / r['run_seconds'])} to that.</p>")


def render(s: dict, began: float | None = None) -> str:
    """The whole page; `began` (a perf_counter time) is when the report started, for its footer."""
    parts = (header, alerts, sections.tokenizer, sections.groups, sections.lengths, sections.vocab,
             sections.quarantine, sections.dynamic, speed)
    body = "".join(part(s) for part in parts)
    body += footer(s, None if began is None else time.perf_counter() - began)
    title = esc(f"tokenmill report: {s['dataset'].get('name')}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
            f"<body><main>{body}</main></body></html>\n")
