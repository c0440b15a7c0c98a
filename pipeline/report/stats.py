"""Dataset statistics over the shards with dask.dataframe: groups, lengths, token use, dynamic stage.

Each shard is read once, by one dask task (`load_shard`), into three small pandas frames:
one row per sample (no tokens), the shard's token counts (nonzero ids only, dynamic ids
expanded to base ids), and its dynamic-stage lengths. Everything else is dask.dataframe
reductions over those frames, so the same graph runs on dask's threads locally and on Ray
through `ray.util.dask` when a Ray cluster is connected.
"""
from __future__ import annotations

import json
import math
import operator
import os
import sys
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.dataset.read import Dataset, DatasetFolder, ShardRef

GROUP_KINDS = ("folder", "extension", "modality")
HIST_STEPS = 4  # histogram bins per doubling of length
PARTITION_BYTES = 256 * 2**20  # shard bytes per dask partition: few tasks, yet parallel
N_LONGEST = 10
TOP_LEVEL = "(top level)"
NONE = "(none)"

SAMPLE_DTYPES = {"id": "str", "source": "str", "modality": "str", "group": "str", "shard": "str",
                 "n_tokens": "int64", "n_bytes": "int64"}
COUNT_DTYPES = {"token": "int64", "count": "int64"}
DYN_DTYPES = {"shard": "str", "n_tokens": "int64", "n_base_tokens": "int64", "n_merges": "int64"}


@dataclass(frozen=True)
class ReadContext:
    """What a shard task needs, picklable so it ships to Ray workers."""

    uri: str
    storage_options: dict
    group_by: str
    prefix: str
    base_vocab_size: int


def check_group_by(group_by: str) -> str:
    """Validate a grouping name: folder, extension, modality or meta:<key>."""
    if group_by in GROUP_KINDS or (group_by.startswith("meta:") and len(group_by) > 5):
        return group_by
    raise ValueError(f"group_by {group_by!r}: use folder, extension, modality or meta:<key> "
                     "(a field of the samples' meta JSON, e.g. meta:lang)")


def dask_scheduler() -> Any:
    """Ray's dask scheduler when this process is connected to Ray, else dask's threads."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        from ray.util.dask import ray_dask_get
        return ray_dask_get
    return "threads"


def common_prefix(uris: list[str]) -> str:
    """The deepest folder that holds all inputs, ending in '/' ('' when there are none)."""
    dirs = [u.rsplit("/", 1)[0].split("/") for u in uris if "/" in u]
    if not dirs:
        return ""
    common = dirs[0]
    for parts in dirs[1:]:
        n = next((i for i, (a, b) in enumerate(zip(common, parts)) if a != b), min(len(common), len(parts)))
        common = common[:n]
    return "/".join(common) + "/"


def group_keys(values: list[str], ctx: ReadContext) -> list[str]:
    """Groups of column values: top folder below the common prefix, extension, modality or a meta field."""
    if ctx.group_by == "modality":
        return values
    if ctx.group_by.startswith("meta:"):
        return [_meta_value(m, ctx.group_by[5:]) for m in values]
    if ctx.group_by == "extension":
        return [PurePosixPath(s).suffix.lower() or NONE for s in values]
    rel = [s[len(ctx.prefix):] if s.startswith(ctx.prefix) else s.split("://")[-1].lstrip("/") for s in values]
    return [r.split("/", 1)[0] if "/" in r else TOP_LEVEL for r in rel]


def _meta_value(meta: str | None, key: str) -> str:
    try:
        value = json.loads(meta or "{}").get(key)
    except (json.JSONDecodeError, AttributeError):
        return NONE
    return NONE if value is None else str(value)


def load_shards(refs: list[ShardRef], ctx: ReadContext) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One partition: several shards, each read once, as per-sample rows, token counts, dynamic lengths."""
    tables, counts, dyn = [], np.zeros(0, np.int64), []
    for ref in refs:
        table, shard_counts, shard_dyn = load_shard(ref, ctx)
        tables.append(table)
        counts = _add(counts, shard_counts)
        dyn += shard_dyn
    samples = pa.concat_tables(tables).to_pandas().astype(SAMPLE_DTYPES)
    nz = np.flatnonzero(counts)
    return (samples, pd.DataFrame({"token": nz, "count": counts[nz]}).astype(COUNT_DTYPES),
            pd.DataFrame(dyn, columns=list(DYN_DTYPES)).astype(DYN_DTYPES))


def load_shard(ref: ShardRef, ctx: ReadContext) -> tuple[pa.Table, np.ndarray, list[dict]]:
    """Read one shard: per-sample rows (no tokens), base token counts, dynamic-stage lengths."""
    columns = ["id", "source", "modality", "tokens", "n_bytes"] + (["meta"] if ctx.group_by.startswith("meta:") else [])
    table = DatasetFolder(ctx.uri, ctx.storage_options).read_table(ref, columns)
    samples = pa.table({
        "id": table["id"], "source": table["source"], "modality": table["modality"],
        "group": pa.array(group_column(table, ctx), pa.string()),
        "shard": pa.array([ref.name] * table.num_rows, pa.string()),
        "n_tokens": pc.list_value_length(table["tokens"]).fill_null(0).cast(pa.int64()),
        "n_bytes": table["n_bytes"].cast(pa.int64())})
    counts, dyn = token_counts(table, ref.name, ctx.base_vocab_size)
    return samples, counts, dyn


def group_column(table: pa.Table, ctx: ReadContext) -> np.ndarray:
    """Group keys of all rows, computed once per distinct source/meta value, not per row."""
    column = "modality" if ctx.group_by == "modality" else "meta" if ctx.group_by.startswith("meta:") else "source"
    encoded = table[column].combine_chunks().dictionary_encode() if table.num_rows else None
    if encoded is None:
        return np.array([], dtype=object)
    keys = np.array(group_keys(encoded.dictionary.to_pylist(), ctx), dtype=object)
    return keys[encoded.indices.to_numpy(zero_copy_only=False)]


def token_counts(table: pa.Table, shard: str, vocab: int) -> tuple[np.ndarray, list[dict]]:
    """Base-id counts of a shard (dynamic ids expanded) and its dynamic lengths, if any."""
    meta = table.schema.metadata or {}
    vocab = int(meta.get(b"tokenmill.base_vocab_size", vocab) or 0)
    dyn = json.loads(meta[b"tokenmill.dynamic_vocab"]) if b"tokenmill.dynamic_vocab" in meta else None
    tokens = table["tokens"].combine_chunks() if table.num_rows else pa.array([], pa.list_(pa.uint32()))
    total = np.zeros(vocab, np.int64)
    n_stored = n_base = n_merges = 0
    for merges, start, end in _segments(dyn, table.num_rows):
        flat = tokens.slice(start, end - start).flatten().to_numpy(zero_copy_only=False)
        raw = np.bincount(flat, minlength=vocab + len(merges)).astype(np.int64)
        base, n = expand_counts(raw, merges, vocab)
        total = _add(total, base)
        n_stored, n_base, n_merges = n_stored + len(flat), n_base + n, n_merges + len(merges)
    rows = [{"shard": shard, "n_tokens": n_stored, "n_base_tokens": n_base, "n_merges": n_merges}] if dyn else []
    return total, rows


def _segments(dyn: Any, n_rows: int) -> list[tuple[list, int, int]]:
    """(merges, first row, end row) per dynamic vocabulary; one segment without the stage.

    Reads the layout pipeline/stages/dynamic.py writes ({"groups": [{"rows": [r0, r1],
    "merges": ...}]}) and the single-vocabulary one of docs/formats.md ({"merges": ...}).
    """
    if dyn is None:
        return [([], 0, n_rows)]
    if "groups" in dyn:
        return [(g["merges"], g["rows"][0], g["rows"][1]) for g in dyn["groups"]]
    return [(dyn["merges"], 0, n_rows)]


def expand_counts(raw: np.ndarray, merges: list, vocab: int) -> tuple[np.ndarray, int]:
    """Push each dynamic id's count down to the pair it stands for; returns base counts, base length."""
    counts = raw.copy()
    for i in range(len(merges) - 1, -1, -1):
        a, b = merges[i]
        counts[a] += counts[vocab + i]
        counts[b] += counts[vocab + i]
    base = counts[:vocab] if vocab else counts
    return base, int(base.sum()) + int(raw[len(base) + len(merges):].sum())


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(b) > len(a):
        a, b = b, a
    a = a.copy()
    a[: len(b)] += b
    return a


def _frames(parts: list, i: int, dtypes: dict) -> dd.DataFrame:
    meta = pd.DataFrame({k: pd.Series([], dtype=v) for k, v in dtypes.items()})
    return dd.from_delayed([dask.delayed(operator.getitem)(p, i) for p in parts], meta=meta, verify_meta=False)


def parallelism() -> int:
    """CPUs the scheduler can use: the Ray cluster's when connected, else this machine's."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    return os.cpu_count() or 1


def partitions(refs: list[ShardRef], n_cpus: int) -> list[list[ShardRef]]:
    """Consecutive shards per partition: about PARTITION_BYTES each, at least 2 partitions per CPU."""
    total = sum(r.size for r in refs)
    n = max(1, min(len(refs), max(2 * n_cpus, math.ceil(total / PARTITION_BYTES))))
    step = math.ceil(len(refs) / n)
    return [refs[i:i + step] for i in range(0, len(refs), step)]


def compute_shard_stats(ds: Dataset, refs: list[ShardRef], ctx: ReadContext) -> dict:
    """Run the dask graph over the shards on disk; returns plain pandas/numpy results."""
    parts = [dask.delayed(load_shards)(batch, ctx, dask_key_name=f"tokenmill-shards-{i:06d}-{batch[0].name}")
             for i, batch in enumerate(partitions(refs, parallelism()))]
    samples, counts, dyn = (_frames(parts, i, d) for i, d in enumerate((SAMPLE_DTYPES, COUNT_DTYPES, DYN_DTYPES)))
    sums = {"n_samples": ("n_tokens", "count"), "n_tokens": ("n_tokens", "sum"), "n_bytes": ("n_bytes", "sum")}
    n = samples["n_tokens"]
    bins = n.map_partitions(log_bins, meta=("n_tokens", "int64"))
    graph = {
        "groups": samples.groupby("group").agg(**sums), "modalities": samples.groupby("modality").agg(**sums),
        "shards": samples.groupby("shard").agg(**sums), "hist": bins.value_counts(split_out=1),
        "longest": samples.nlargest(N_LONGEST, "n_tokens"),
        "min": n.min(), "max": n.max(), "mean": n.mean(), "quantiles": n.quantile([0.5, 0.9, 0.99]),
        "counts": counts.groupby("token")["count"].sum(split_out=1), "dynamic": dyn,
    }
    return dict(zip(graph, dask.compute(*graph.values(), scheduler=dask_scheduler())))


def log_bins(lengths: pd.Series) -> pd.Series:
    """Histogram bin of each length: HIST_STEPS bins per doubling; -1 holds empty samples."""
    values = lengths.to_numpy(dtype="float64")
    with np.errstate(divide="ignore"):
        b = np.where(values > 0, np.floor(np.log2(np.maximum(values, 1)) * HIST_STEPS), -1)
    return pd.Series(b.astype("int64"), index=lengths.index, name=lengths.name)


def bin_edges(b: int) -> tuple[int, int]:
    """Integer length range [lo, hi) covered by histogram bin b."""
    if b < 0:
        return 0, 1
    return math.ceil(2 ** (b / HIST_STEPS)), math.ceil(2 ** ((b + 1) / HIST_STEPS))
