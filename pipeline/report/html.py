"""Render the statistics as one self-contained HTML page: inline CSS, plots as SVG data URIs.

No script, font or style sheet is fetched: the page opens from a file with no network.
Every string from the data is escaped; tables show the first MAX_ROWS rows (the JSON of
`tokenmill stats --json` has them all).
"""
from __future__ import annotations

import html
import time
from typing import Any, Iterable

from pipeline.report import plots

MAX_ROWS = 50

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
main{max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d9dde3;padding-bottom:4px}
.sub{color:#5b6475;margin:0 0 16px} .cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}
.card{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:10px 14px;min-width:120px}
.card b{display:block;font-size:20px} .card span{color:#5b6475;font-size:12px}
table{border-collapse:collapse;background:#fff;margin:8px 0;font-size:13px;width:100%}
th,td{border:1px solid #e1e4e8;padding:4px 8px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums} th{background:#eef1f5}
code{font-size:12px;word-break:break-all} code.tok{white-space:pre;background:#eef1f5;padding:0 2px}
.note{color:#5b6475;font-size:12px;margin:0 0 8px} img{max-width:100%;background:#fff;border:1px solid #e1e4e8;margin:8px 0}
.alert{background:#fff4e5;border:1px solid #f0b86e;border-radius:6px;padding:8px 12px;margin:10px 0}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:10px}
.empty{background:#eef1f5;border-radius:6px;padding:16px;font-size:16px}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value."""
    return html.escape("" if value is None else str(value))


def num(value: Any, digits: int = 3) -> str:
    """A number for people: thousands separators, a few significant digits, '–' for none."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def size(n: Any) -> str:
    """Bytes as B/KiB/MiB/GiB/TiB."""
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"


def when(t: float | None) -> str:
    """A unix time as UTC date and time."""
    return "–" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def pct(x: Any) -> str:
    """A share as a percentage."""
    return "–" if x is None else f"{100 * x:.1f}%"


def table(headers: list[str], rows: Iterable[list[Any]], numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are escaped except those already marked up (tuples ('raw', html))."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body, rows = [], list(rows)
    for row in rows[:MAX_ROWS]:
        cells = [c[1] if isinstance(c, tuple) else esc(c) for c in row]
        body.append("".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                            for i, c in enumerate(cells)))
    more = (f'<p class="note">First {MAX_ROWS} of {len(rows):,} rows; `tokenmill stats OUT --json` '
            "has them all.</p>") if len(rows) > MAX_ROWS else ""
    return f"<table><tr>{head}</tr>" + "".join(f"<tr>{r}</tr>" for r in body) + "</table>" + more


def img(uri: str, alt: str) -> str:
    """An embedded plot."""
    return f'<img src="{uri}" alt="{esc(alt)}">'


def side_by_side(*parts: str) -> str:
    """Plots next to each other where the page is wide enough."""
    return '<div class="plots">' + "".join(p for p in parts if p) + "</div>"


def header(s: dict) -> str:
    """Title, dataset path, tokenizer, and the summary cards."""
    d, t = s["dataset"], s["totals"]
    tok = d.get("tokenizer", {})
    cards = [("shards", num(t["n_shards"])), ("samples", num(t["n_samples"])), ("tokens", num(t["n_tokens"])),
             ("input bytes", size(t["n_bytes"])), ("bytes / token", num(t["bytes_per_token"])),
             ("quarantined inputs", num(s["errors"]["n_errors"]))]
    return (f"<h1>tokenmill report: {esc(d.get('name'))}</h1>"
            f'<p class="sub"><code>{esc(d["path"])}</code> · tokenizer {esc(tok.get("kind"))}, '
            f'{num(tok.get("vocab_size"))} ids, {esc(d.get("token_dtype"))} · grouped by {esc(s["group_by"])}</p>'
            '<div class="cards">' + "".join(f"<div class=card><b>{v}</b><span>{esc(k)}</span></div>"
                                            for k, v in cards) + "</div>")


def alerts(s: dict) -> str:
    """Missing shards, shards that disagree with the index, and an empty dataset, said plainly."""
    out = []
    if s["totals"]["n_samples"] == 0:
        out.append('<p class="empty">This dataset has no samples: nothing was tokenized'
                   f' ({num(s["errors"]["n_errors"])} inputs quarantined).</p>')
    if s["missing_shards"]:
        names = ", ".join(f"<code>{esc(m['name'])}</code> ({esc(', '.join(m['paths']))})"
                          for m in s["missing_shards"])
        out.append(f'<div class="alert"><b>{len(s["missing_shards"])} shard(s) listed in dataset.json are '
                   f"missing from disk</b> and are not counted below: {names}</div>")
    if s["mismatched_shards"]:
        names = ", ".join(f"<code>{esc(m['name'])}</code>" for m in s["mismatched_shards"])
        out.append(f'<div class="alert"><b>Shards whose contents differ from the index:</b> {names}</div>')
    return "".join(out)


def groups(s: dict) -> str:
    """Per group and per modality: samples, tokens, bytes, bytes per token, premium; two bar charts."""
    if not s["groups"]:
        return ""
    rows = s["groups"]
    labels = [r["group"] for r in rows]
    return (f"<h2>By {esc(s['group_by'])}</h2>"
            + side_by_side(img(plots.bars(labels, [r["n_tokens"] for r in rows], title=f"Tokens by {s['group_by']}",
                                          xlabel="tokens"), "tokens per group"),
                           img(plots.bars(labels, [r["bytes_per_token"] or 0 for r in rows],
                                          title="Bytes per token (higher = better compression)",
                                          xlabel="input bytes per token", overall=s["totals"]["bytes_per_token"]),
                               "bytes per token per group"))
            + _group_table(rows, "group") + "<h2>By modality</h2>" + _group_table(s["modalities"], "modality"))


def _group_table(rows: list[dict], key: str) -> str:
    return table([key, "samples", "tokens", "input bytes", "bytes / token", "token premium"],
                 ([r[key], num(r["n_samples"]), num(r["n_tokens"]), size(r["n_bytes"]),
                   num(r["bytes_per_token"]), num(r["token_premium"])] for r in rows), numeric={1, 2, 3, 4, 5})


def lengths(s: dict) -> str:
    """Length histogram (log scale), summary numbers and the longest samples."""
    ln = s["lengths"]
    if not ln["histogram"]:
        return ""
    facts = " · ".join(f"{k} {num(ln[k])}" for k in ("min", "p50", "mean", "p90", "p99", "max"))
    longest = table(["id", "group", "shard", "tokens", "input bytes"],
                    ([("raw", f"<code>{esc(r['id'])}</code>"), r["group"], r["shard"], num(r["n_tokens"]),
                      size(r["n_bytes"])] for r in s["longest"]), numeric={3, 4})
    return ("<h2>Sample lengths</h2>" + f"<p>tokens per sample: {facts} (quantiles approximate)</p>"
            + img(plots.length_histogram(ln["histogram"]), "token length histogram")
            + "<h3>Longest samples</h3>" + longest)


def vocab(s: dict) -> str:
    """Most frequent tokens and the share of the vocabulary never used."""
    v = s["vocab"]
    if not v["top"]:
        return ""
    rows = ([r["id"], ("raw", f'<code class="tok">{esc(repr(r["text"]) if r["text"] is not None else "")}</code>'),
             num(r["count"]), pct(r["share"])] for r in v["top"])
    return ("<h2>Vocabulary use</h2>"
            f"<p>{num(v['n_used'])} of {num(v['vocab_size'])} base ids occur; "
            f"<b>{pct(v['unused_share'])} of the vocabulary is never used</b>.</p>"
            + table(["id", "token", "count", "share of tokens"], rows, numeric={0, 2, 3}))


def quarantine(s: dict) -> str:
    """Quarantined inputs by reason, with a few examples each."""
    e = s["errors"]
    if not e["n_errors"]:
        return "<h2>Quarantine</h2><p>No input was quarantined.</p>"
    rows = ([r["reason"], num(r["count"]),
             ("raw", "<br>".join(f"<code>{esc(x['uri'])}{'#' + esc(x['member']) if x['member'] else ''}</code>"
                                 f" ({esc(x['stage'])}: {esc(x['reason'])})" for x in r["examples"]))]
            for r in e["by_reason"])
    stages = ", ".join(f"{esc(r['stage'])} {num(r['count'])}" for r in e["by_stage"])
    return (f"<h2>Quarantine</h2><p>{num(e['n_errors'])} inputs quarantined; by stage: {stages}.</p>"
            + table(["reason", "inputs", "examples"], rows, numeric={1}))


def dynamic(s: dict) -> str:
    """Length reduction of the dynamic tokenization stage, per shard."""
    d = s["dynamic"]
    if not d:
        return ""
    rows = d["shards"]
    plot = plots.bars([r["shard"] for r in rows], [100 * r["reduction"] for r in rows],
                      title="Length reduction per shard (dynamic tokenization)", xlabel="% fewer tokens",
                      overall=100 * d["reduction"])
    return ("<h2>Dynamic tokenization</h2>"
            f"<p>{num(d['n_base_tokens'])} base tokens stored as {num(d['n_tokens'])}: "
            f"<b>{pct(d['reduction'])} shorter</b>.</p>" + img(plot, "length reduction per shard")
            + table(["shard", "merges", "base tokens", "stored tokens", "reduction"],
                    ([r["shard"], num(r["n_merges"]), num(r["n_base_tokens"]), num(r["n_tokens"]),
                      pct(r["reduction"])] for r in rows), numeric={1, 2, 3, 4}))


def speed(s: dict) -> str:
    """Runs found in the ledger; for the latest, throughput over time and per worker."""
    th = s["throughput"]
    latest = th["latest"]
    if not latest:
        return "<h2>Run speed</h2><p>The ledger holds no timings.</p>"
    runs = table(["run started", "units", "workers", "seconds", "input MB/s", "tokens/s"],
                 ([when(r["started"]), num(r["n_units"]), num(r["n_workers"]), num(r["seconds"]),
                   num((r["bytes_per_second"] or 0) / 1e6), num(r["tokens_per_second"])] for r in th["runs"]),
                 numeric={1, 2, 3, 4, 5})
    tl = latest["timeline"]
    plot = plots.series([p["t"] for p in tl], {"input MB/s": [p["bytes_per_second"] / 1e6 for p in tl]},
                        title="Throughput over the latest run", xlabel="seconds since start", ylabel="input MB/s")
    ws = latest["workers"]
    wplot = plots.bars([w["worker"] for w in ws], [(w["bytes_per_second"] or 0) / 1e6 for w in ws],
                       title="Input MB/s per worker while busy (host:pid)", xlabel="input MB/s")
    wtable = table(["worker", "units", "busy seconds", "input bytes", "tokens", "MB/s while busy"],
                   ([w["worker"], num(w["n_units"]), num(w["busy_seconds"]), size(w["n_bytes"]), num(w["n_tokens"]),
                     num((w["bytes_per_second"] or 0) / 1e6)] for w in ws), numeric={1, 2, 3, 4, 5})
    return ("<h2>Run speed</h2>" + runs
            + side_by_side(img(plot, "throughput over time") if tl else "", img(wplot, "throughput per worker"))
            + wtable)


def footer(s: dict) -> str:
    """How long the report took, beside the run's own time."""
    r = s["report"]
    share = f" ({pct(r['share_of_run'])} of the latest run's time)" if r.get("share_of_run") is not None else ""
    return f'<p class="sub">Statistics computed with dask in {num(r["seconds"])} s{share}.</p>'


def render(s: dict) -> str:
    """The whole page."""
    body = "".join(part(s) for part in (header, alerts, groups, lengths, vocab, quarantine, dynamic, speed, footer))
    title = esc(f"tokenmill report: {s['dataset'].get('name')}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
            f"<body><main>{body}</main></body></html>\n")
