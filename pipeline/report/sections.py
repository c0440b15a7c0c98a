"""The report's data sections: tokenizer and spec, groups, lengths, vocabulary, quarantine, dynamic.

Each takes the statistics dict (pipeline.report.build) and returns HTML, or "" when it has
nothing to show. Counts print whole, measures with 3 significant digits (pipeline.report.fmt).
"""
from __future__ import annotations

from typing import Any

from pipeline.report import plots
from pipeline.report.fmt import num, pct, plural, sig, size
from pipeline.report.markup import (
    MAX_ROWS,
    code,
    esc,
    facts,
    img,
    note,
    raw,
    side_by_side,
    table,
)

N_SPECIAL_SHOWN = 20

PREMIUM = ("<b>Token premium</b> is the dataset's bytes per token ({overall}) over the group's: 1.25 means "
           "the tokenizer spends 25% more tokens on each byte of that group than on the average byte. "
           "A group well above 1 costs the most of a token budget per byte of text: check it is data you "
           "meant to include (minified, generated or binary-like files show up here), or give the tokenizer "
           "more of it to learn from (<code>tokenmill train</code> on a corpus with more of that group, or a "
           "larger <code>--vocab-size</code>).")
VISIBLE = ("Token text is shown with whitespace made visible: <code class=tok>␣</code> a space, "
           "<code class=tok>\\n</code> a newline, <code class=tok>\\t</code> a tab, <code class=tok>&lt;0x00&gt;</code> "
           "a control character or a byte that is only part of a UTF-8 character, <code class=tok>\\\\</code> "
           "a backslash.")


def tokenizer(s: dict) -> str:
    """Tokenizer kind, engine, ids, fingerprint and dtype; the stages; the sink's formats on disk."""
    d = s["dataset"]
    t = d["tokenizer"]
    pairs = [("kind", code(t.get("kind"))), ("engine", esc(t.get("engine") or "–")),
             ("vocabulary", _vocabulary(t["vocab_size"], d["stages"])),
             ("EOS id", _eos(t)), ("special ids", _special(t.get("special") or [])),
             ("fingerprint", code(t.get("fingerprint"))),
             ("token dtype", _dtype(d["token_dtype"], d["token_bytes"] or 0)),
             ("tokenizer files", ", ".join(code(f) for f in t.get("files") or []) or "–")]
    pairs += [(f"option {k}", code(v)) for k, v in sorted((t.get("options") or {}).items())]
    pairs += [(k, code(v)) for k, v in sorted(t.items()) if k not in TOKENIZER_SHOWN]
    pairs += [("modality", esc(d.get("modality") or "–")), ("spec hash", code(d.get("spec_hash") or "–"))]
    return "<h2>Tokenizer and spec</h2>" + facts(pairs) + _stages(d["stages"]) + _storage(d["storage"])


TOKENIZER_SHOWN = {"kind", "engine", "vocab_size", "eos_id", "special", "fingerprint", "files", "options"}


def _dtype(dtype: str, n_bytes: int) -> str:
    return f"{code(dtype)} ({plural(n_bytes, 'byte')} per stored token, ids up to {2 ** (8 * n_bytes) - 1:,})"


def _vocabulary(size: int, stages: list[dict]) -> str:
    merges = next((st["settings"].get("max_merges") for st in stages if st["kind"] == "dynamic"), None)
    extra = (f"; the dynamic stage adds up to {plural(merges, 'id')} per vocabulary from {size:,} on"
             if merges is not None else "")
    return f"{plural(size, 'base id')} (0 to {size - 1:,}){extra}"


def _eos(t: dict) -> str:
    eos = t.get("eos_id")
    if eos is None:
        return "none: samples are stored without an end marker"
    name = next((x["text"] for x in t.get("special") or [] if x["id"] == eos), None)
    return f"{eos:,}" + (f" {code(name, 'tok')}" if name else "") + ", appended to every sample"


def _special(special: list[dict]) -> str:
    if not special:
        return "none"
    shown = ", ".join(f"{x['id']:,}" + (f" {code(x['text'], 'tok')}" if x["text"] else "")
                      for x in special[:N_SPECIAL_SHOWN])
    more = len(special) - N_SPECIAL_SHOWN
    return shown + (f" and {plural(more, 'more')}" if more > 0 else "")


def _stages(stages: list[dict]) -> str:
    if not stages:
        return "<h3>Stages</h3><p>No stages: the tokenizer's ids are stored as they are.</p>"
    rows = ([i + 1, raw(code(st["kind"])), raw(", ".join(f"{esc(k)} {code(_setting(v))}"
                                                         for k, v in st["settings"].items()) or "–")]
            for i, st in enumerate(stages))
    return ("<h3>Stages</h3>" + note("In the order they run, every setting as the spec resolved it "
                                     "(defaults included).")
            + table(["#", "stage", "settings"], rows, numeric={0}))


def _setting(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _storage(rows: list[dict]) -> str:
    if not rows:
        return ""
    body = ([r["format"], num(r["n_files"]), size(r["n_bytes"]), num(r["bytes_per_token"])] for r in rows)
    return ("<h3>Sink formats on disk</h3>"
            + table(["format", "shard files", "size on disk", "bytes on disk per token"], body, numeric={1, 2, 3})
            + note("Sizes are the shard files' sizes recorded in <code>dataset.json</code>; the same tokens are "
                   "written once per format."))


def groups(s: dict) -> str:
    """Per group and per modality: samples, tokens, bytes, bytes per token, premium; two bar charts."""
    if not s["groups"]:
        return ""
    rows, key = s["groups"], s["group_by"]
    rest = rows[plots.SHOWN:]
    tokens = plots.bars([r["group"] for r in rows], [r["n_tokens"] for r in rows], title=f"Tokens by {key}",
                        xlabel="tokens")
    bpt = plots.bars([r["group"] for r in rows], [r["bytes_per_token"] or 0 for r in rows],
                     title="Bytes per token (higher = better compression)", xlabel="input bytes per token",
                     overall=s["totals"]["bytes_per_token"], others=_bpt(rest))
    return (f"<h2>By {esc(key)}</h2>"
            + side_by_side(img(tokens, "tokens per group"), img(bpt, "bytes per token per group"))
            + _group_table(rows, "group", s["totals"]) + _premium(s)
            + "<h2>By modality</h2>" + _group_table(s["modalities"], "modality", s["totals"]))


def _bpt(rows: list[dict]) -> float | None:
    n_tokens = sum(r["n_tokens"] for r in rows)
    return sum(r["n_bytes"] for r in rows) / n_tokens if n_tokens else None


def _group_table(rows: list[dict], key: str, totals: dict) -> str:
    rest = rows[MAX_ROWS:]
    n_tokens = sum(r["n_tokens"] for r in rest)
    rest_bpt = _bpt(rest)
    summed = [f"{len(rest):,} more", num(sum(r["n_samples"] for r in rest)), num(n_tokens),
              size(sum(r["n_bytes"] for r in rest)), num(rest_bpt),
              num(totals["bytes_per_token"] / rest_bpt if rest_bpt and totals["bytes_per_token"] else None)]
    return table([key, "samples", "tokens", "input bytes", "bytes / token", "token premium"],
                 ([r[key], num(r["n_samples"]), num(r["n_tokens"]), size(r["n_bytes"]),
                   num(r["bytes_per_token"]), num(r["token_premium"])] for r in rows), numeric={1, 2, 3, 4, 5},
                 rest=summed, titles={5: "the dataset's bytes per token / the group's; 1.25 = 25% more tokens "
                                         "per byte than on average"})


def _premium(s: dict) -> str:
    rows = [r for r in s["groups"] if r["token_premium"] is not None]
    top = max(rows, key=lambda r: r["token_premium"]) if rows else None
    worst = (f" Highest here: {code(top['group'])}, {sig(top['token_premium'])}." if top and len(rows) > 1 else "")
    return note(PREMIUM.format(overall=num(s["totals"]["bytes_per_token"])) + worst)


def lengths(s: dict) -> str:
    """Length histogram (log scale), summary numbers and the longest samples."""
    ln = s["lengths"]
    if not ln["histogram"]:
        return ""
    whole = {k: None if ln[k] is None else min(max(round(ln[k]), ln["min"]), ln["max"]) for k in ("p50", "p90", "p99")}
    stats = " · ".join(f"{k} {num(whole.get(k, ln[k]))}" for k in ("min", "p50", "mean", "p90", "p99", "max"))
    longest = table(["id", "group", "shard", "tokens", "input bytes"],
                    ([raw(code(r["id"])), r["group"], r["shard"], num(r["n_tokens"]), size(r["n_bytes"])]
                     for r in s["longest"]), numeric={3, 4})
    return ("<h2>Sample lengths</h2>" + f"<p>tokens per sample: {stats} (p50, p90 and p99 are dask's approximations, rounded to whole tokens)</p>"
            + img(plots.length_histogram(ln["histogram"]), "token length histogram")
            + f"<h3>The {plural(len(s['longest']), 'longest sample')}</h3>" + longest)


def vocab(s: dict) -> str:
    """Most frequent tokens, whitespace made visible, and the share of the vocabulary never used."""
    v = s["vocab"]
    if not v["top"]:
        return ""
    rows = ([r["id"], raw(code(r["shown"] if r["shown"] is not None else "", "tok")
                          + (" (special)" if r.get("special") else "")), num(r["count"]), pct(r["share"])]
            for r in v["top"])
    return ("<h2>Vocabulary use</h2>"
            f"<p>{num(v['n_used'])} of {plural(v['vocab_size'] or 0, 'base id')} occur; "
            f"<b>{pct(v['unused_share'])} of the vocabulary is never used</b>.</p>"
            + table(["id", "token", "count", "share of tokens"], rows, numeric={0, 2, 3}) + note(VISIBLE))


def quarantine(s: dict) -> str:
    """Quarantined inputs by reason, with a few examples each."""
    e = s["errors"]
    empty = (f" {plural(e['n_empty'], 'empty input')} (zero bytes, or an empty document) "
             "were skipped: they hold nothing to tokenize, and are listed in <code>_errors/</code> with stage "
             "<code>empty</code>." if e["n_empty"] else "")
    if not e["n_errors"]:
        return f"<h2>Quarantine</h2><p>No input was quarantined.{empty}</p>"
    rows = ([r["reason"], num(r["count"]),
             raw("<br>".join(f"<code>{esc(x['uri'])}{'#' + esc(x['member']) if x['member'] else ''}</code>"
                             f" ({esc(x['stage'])}: {esc(x['reason'])})" for x in r["examples"]))]
            for r in e["by_reason"])
    stages = ", ".join(f"{esc(r['stage'])} {num(r['count'])}" for r in e["by_stage"])
    return (f"<h2>Quarantine</h2><p>{plural(e['n_errors'], 'input')} quarantined; by stage: {stages}.{empty}</p>"
            + table(["reason", "inputs", "examples"], rows, numeric={1}))


def dynamic(s: dict) -> str:
    """Length reduction of the dynamic tokenization stage, per shard."""
    d = s["dynamic"]
    if not d:
        return ""
    rows = d["shards"]
    plot = plots.bars([r["shard"] for r in rows], [100 * r["reduction"] for r in rows],
                      title="Length reduction per shard (dynamic tokenization)", xlabel="% fewer tokens",
                      overall=100 * d["reduction"], others=100 * _reduction(rows[plots.SHOWN:]))
    rest = rows[MAX_ROWS:]
    summed = [f"{len(rest):,} more", num(sum(r["n_merges"] for r in rest)),
              num(sum(r["n_base_tokens"] for r in rest)), num(sum(r["n_tokens"] for r in rest)),
              pct(_reduction(rest))]
    return ("<h2>Dynamic tokenization</h2>"
            f"<p>{plural(d['n_base_tokens'], 'base token')} stored as {num(d['n_tokens'])}: "
            f"<b>{pct(d['reduction'])} shorter</b>.</p>" + img(plot, "length reduction per shard")
            + table(["shard", "merges", "base tokens", "stored tokens", "reduction"],
                    ([r["shard"], num(r["n_merges"]), num(r["n_base_tokens"]), num(r["n_tokens"]),
                      pct(r["reduction"])] for r in rows), numeric={1, 2, 3, 4}, rest=summed))


def _reduction(rows: list[dict]) -> float:
    base = sum(r["n_base_tokens"] for r in rows)
    return 1 - sum(r["n_tokens"] for r in rows) / base if base else 0.0
