"""Turn the dask results, the ledger and the quarantine into the report's JSON-ready numbers.

Bytes per token is input bytes over stored tokens. The token premium of a group is its
tokens per byte over the whole dataset's (the dataset's bytes per token over the group's):
1.25 means the tokenizer needs 25% more tokens for the same number of bytes there than on
average.
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.dataset.read import Dataset
from pipeline.dataset.records import DatasetIndex
from pipeline.errors import EMPTY
from pipeline.report.fmt import visible
from pipeline.report.stats import bin_edges
from pipeline.report.tokens import Vocabulary

N_TOP_TOKENS = 20
N_EXAMPLES = 3


def _num(x: Any) -> Any:
    """A plain JSON number (None for NaN or missing)."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return None
    return x.item() if hasattr(x, "item") else x


def group_rows(frame: pd.DataFrame, key: str) -> list[dict]:
    """Rows of a per-group sum table with bytes per token and token premium, most tokens first."""
    total_bpt = _ratio(frame["n_bytes"].sum(), frame["n_tokens"].sum())
    rows = []
    for name, r in frame.sort_values(["n_tokens", "n_samples"], ascending=False).iterrows():
        bpt = _ratio(r["n_bytes"], r["n_tokens"])
        rows.append({key: str(name), "n_samples": int(r["n_samples"]), "n_tokens": int(r["n_tokens"]),
                     "n_bytes": int(r["n_bytes"]), "bytes_per_token": bpt,
                     "token_premium": _ratio(total_bpt, bpt) if total_bpt and bpt else None})
    return rows


def _ratio(a: Any, b: Any) -> float | None:
    return float(a) / float(b) if b else None


def totals(res: dict, index: DatasetIndex, missing: list[dict]) -> dict:
    """Totals over the shards read, beside the index's own totals and any disagreement."""
    shards = res["shards"] if res else pd.DataFrame(columns=["n_samples", "n_tokens", "n_bytes"])
    out = {"n_shards": int(len(index.shards) - len(missing)),
           **{k: int(shards[k].sum()) for k in ("n_samples", "n_tokens", "n_bytes")}}
    out["bytes_per_token"] = _ratio(out["n_bytes"], out["n_tokens"])
    out["tokens_per_sample"] = _ratio(out["n_tokens"], out["n_samples"])
    return out


def shard_mismatches(res: dict, index: DatasetIndex, missing: list[dict]) -> list[dict]:
    """Shards whose counts on disk differ from what the index says."""
    gone = {m["name"] for m in missing}
    seen = res["shards"] if res else None
    out = []
    for shard in index.shards:
        if shard.name in gone:
            continue
        got = {k: int(seen.loc[shard.name, k]) if seen is not None and shard.name in seen.index else 0
               for k in ("n_samples", "n_tokens", "n_bytes")}
        want = {k: getattr(shard, k) for k in got}
        if got != want:
            out.append({"name": shard.name, "index": want, "shard": got})
    return out


def lengths(res: dict) -> dict:
    """Length distribution: min/max/mean, approximate quantiles, log-scale histogram."""
    if not res or res["hist"].empty:
        return {"min": None, "max": None, "mean": None, "p50": None, "p90": None, "p99": None, "histogram": []}
    q = res["quantiles"]
    hist = [{"lo": bin_edges(int(b))[0], "hi": bin_edges(int(b))[1], "count": int(c)}
            for b, c in sorted(res["hist"].items())]
    return {"min": _num(res["min"]), "max": _num(res["max"]), "mean": _num(float(res["mean"])),
            "p50": _num(float(q.iloc[0])), "p90": _num(float(q.iloc[1])), "p99": _num(float(q.iloc[2])),
            "histogram": hist}


def longest(res: dict) -> list[dict]:
    """The longest samples, longest first."""
    if not res:
        return []
    cols = ["id", "source", "group", "shard", "n_tokens", "n_bytes"]
    return [{k: _num(r[k]) for k in cols} for _, r in res["longest"].iterrows()]


def vocab(res: dict, ds: Dataset, words: Vocabulary) -> dict:
    """Token use: the most frequent base ids (text as stored, and shown with visible whitespace)
    and the never-used share."""
    size = ds.base_vocab_size
    counts = res["counts"] if res else pd.Series([], dtype="int64")
    counts = counts[counts.index < size] if size else counts
    total = int(counts.sum())
    top = counts.sort_values(ascending=False, kind="stable").head(N_TOP_TOKENS)
    used = int((counts > 0).sum())
    return {"vocab_size": size or None, "n_used": used, "n_tokens": total,
            "unused_share": _ratio(size - used, size) if size else None,
            "top": [_top_row(int(i), int(c), total, words) for i, c in top.items()]}


def _top_row(i: int, count: int, total: int, words: Vocabulary) -> dict:
    text = words.text(i)
    return {"id": i, "count": count, "share": _ratio(count, total), "special": i in words.special,
            "text": None if text is None else text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
            "shown": None if text is None else text if i in words.special else visible(text)}


def dynamic(res: dict) -> dict | None:
    """Per-shard length reduction of the dynamic stage, or None when it did not run."""
    frame = res["dynamic"] if res else None
    if frame is None or frame.empty:
        return None
    rows = [{"shard": r["shard"], "n_tokens": int(r["n_tokens"]), "n_base_tokens": int(r["n_base_tokens"]),
             "n_merges": int(r["n_merges"]), "reduction": 1 - (_ratio(r["n_tokens"], r["n_base_tokens"]) or 1)}
            for _, r in frame.sort_values("shard").iterrows()]
    n, base = sum(r["n_tokens"] for r in rows), sum(r["n_base_tokens"] for r in rows)
    return {"n_tokens": n, "n_base_tokens": base, "reduction": 1 - (_ratio(n, base) or 1), "shards": rows}


def reason_kind(reason: str | None) -> str:
    """A reason without its details: the text before ': ' or ' (', numbers folded to N.

    'invalid UTF-8 at byte 87: b'\\xe9'' and '... at byte 431: ...' are one kind.
    """
    head = re.split(r": | \(", reason or "", maxsplit=1)[0]
    return re.sub(r"(?<![-\d])\d[\d,]*", "N", head) or "(no reason)"


def errors(table: pa.Table) -> dict:
    """Quarantined inputs by kind of reason, and by stage; examples keep the full reason.
    Empty inputs (stage `empty`) are counted apart as n_empty: they are not bad input."""
    frame = table.to_pandas()
    empty = frame["stage"] == EMPTY
    n_empty = int(empty.sum())
    frame = frame[~empty].copy()
    frame["kind"] = [reason_kind(r) for r in frame["reason"]]
    by_reason = []
    for kind, grp in sorted(frame.groupby("kind"), key=lambda kv: (-len(kv[1]), kv[0])):
        examples = grp.head(N_EXAMPLES)[["uri", "member", "reason", "stage", "unit"]].to_dict("records")
        by_reason.append({"reason": kind, "count": int(len(grp)), "examples": examples})
    stages = frame["stage"].value_counts()
    return {"n_errors": int(len(frame)), "n_empty": n_empty, "by_reason": by_reason,
            "by_stage": [{"stage": str(s), "count": int(c)} for s, c in stages.items()]}


def dumps(stats: dict) -> str:
    """Stable JSON of the statistics."""
    return json.dumps(stats, indent=2, sort_keys=True, default=_num)
