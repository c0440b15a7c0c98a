"""Read a tokenmill output folder for the report and lineage: index, ledger, quarantine, shards.

Everything here follows docs/formats.md and goes through fsspec, so a dataset on S3 reads
the same as a local one. The driver only lists folders and reads small JSON; shard files are
read inside dask tasks (pipeline/report/stats.py) or one at a time (pipeline/lineage.py).
"""
from __future__ import annotations

import io
import json
import logging
import tarfile
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

READ_ORDER = ("arrow", "parquet", "webdataset")


class DatasetError(ValueError):
    """An output folder that cannot be read as a tokenmill dataset; the message says why."""


@dataclass(frozen=True)
class ShardRef:
    """One shard of the index and the file the report reads it from."""

    name: str
    unit: str
    fmt: str
    path: str
    n_samples: int
    n_tokens: int
    n_bytes: int
    size: int = 0


@dataclass(frozen=True)
class Dataset:
    """An opened output folder: its index, ledger entries and where its files are."""

    root: str
    fs: Any = field(repr=False)
    index: dict
    ledger: list[dict]

    def path(self, rel: str) -> str:
        """Absolute path (in the folder's filesystem) of a path relative to the folder."""
        return f"{self.root}/{rel}"

    def storage(self) -> tuple[str, dict]:
        """Protocol and storage options, enough to reopen the filesystem inside a task."""
        proto = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return proto, dict(self.fs.storage_options)

    @property
    def base_vocab_size(self) -> int:
        return int(self.index.get("tokenizer", {}).get("vocab_size") or 0)


def open_dataset(out_dir: str, storage_options: dict | None = None) -> Dataset:
    """Open OUT: read dataset.json and the ledger, or raise DatasetError naming the problem."""
    fs, root = fsspec.core.url_to_fs(str(out_dir), **(storage_options or {}))
    root = root.rstrip("/") or "/"
    if not fs.isdir(root):
        raise DatasetError(f"{out_dir}: no such folder")
    index_path = f"{root}/dataset.json"
    if not fs.isfile(index_path):
        raise DatasetError(f"{out_dir}: not a tokenmill dataset (no dataset.json; "
                           "run `tokenmill run job.yaml` to make one)")
    index = _read_json(fs, index_path, out_dir)
    if index.get("format") != "tokenmill.dataset" or not isinstance(index.get("shards"), list):
        raise DatasetError(f"{index_path}: not a tokenmill index "
                           "(expected \"format\": \"tokenmill.dataset\" and a \"shards\" list)")
    return Dataset(root=root, fs=fs, index=index, ledger=read_ledger(fs, root))


def _read_json(fs: Any, path: str, origin: str) -> dict:
    try:
        with fs.open(path, "rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{origin}: {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{origin}: {path} is not a JSON object")
    return data


def read_ledger(fs: Any, root: str) -> list[dict]:
    """All ledger entries, sorted by unit id; an unreadable entry is skipped with a warning."""
    folder = f"{root}/_ledger"
    if not fs.isdir(folder):
        return []
    entries = []
    for path in sorted(p for p in fs.ls(folder, detail=False) if p.endswith(".json")):
        try:
            entries.append(_read_json(fs, path, root))
        except DatasetError as err:
            log.warning("skipping ledger entry: %s", err)
    return sorted(entries, key=lambda e: str(e.get("unit", "")))


def shard_refs(ds: Dataset) -> tuple[list[ShardRef], list[dict]]:
    """The index's shards split into those on disk and those missing (name, path)."""
    present = _listing(ds.fs, ds.path("shards"))
    found, missing = [], []
    for shard in ds.index["shards"]:
        ref = _pick_file(shard)
        if ref is None or ds.path(ref.path) not in present:
            paths = [f["path"] for f in shard.get("files", {}).values()]
            missing.append({"name": shard.get("name", "?"), "paths": paths})
        else:
            found.append(ref)
    return found, missing


def _listing(fs: Any, folder: str) -> set[str]:
    if not fs.isdir(folder):
        return set()
    return {p.rstrip("/") for p in fs.ls(folder, detail=False)}


def _pick_file(shard: dict) -> ShardRef | None:
    files = shard.get("files", {})
    for fmt in READ_ORDER:
        if fmt in files:
            return ShardRef(name=shard["name"], unit=shard.get("unit", ""), fmt=fmt,
                            path=files[fmt]["path"], n_samples=int(shard.get("n_samples", 0)),
                            n_tokens=int(shard.get("n_tokens", 0)), n_bytes=int(shard.get("n_bytes", 0)),
                            size=int(files[fmt].get("size") or 0))
    return None


def read_shard(fs: Any, path: str, fmt: str, columns: list[str]) -> pa.Table:
    """The given columns of one shard file (Arrow IPC, Parquet or WebDataset tar)."""
    if fmt == "arrow":
        table = ipc.open_file(_arrow_source(fs, path)).read_all()
        return table.select([c for c in columns if c in table.column_names])
    if fmt == "parquet":
        with fs.open(path, "rb") as f:
            schema = pq.read_schema(f)
            f.seek(0)
            keep = [c for c in columns if c in schema.names]
            return pq.read_table(f, columns=keep).replace_schema_metadata(schema.metadata)
    if fmt == "webdataset":
        with fs.open(path, "rb") as f:
            return _read_tar(f, columns)
    raise DatasetError(f"{path}: unknown shard format {fmt!r}")


def _arrow_source(fs: Any, path: str) -> Any:
    """A memory map for a local file (zero copy), else the whole object read once."""
    if "file" in ([fs.protocol] if isinstance(fs.protocol, str) else fs.protocol):
        return pa.memory_map(path)
    with fs.open(path, "rb") as f:
        return pa.BufferReader(f.read())


def _read_tar(fileobj: Any, columns: list[str]) -> pa.Table:
    """Rows of a WebDataset shard: <key>.json carries the fields, <key>.tokens.npy the tokens."""
    rows: dict[str, dict] = {}
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            data = tar.extractfile(member).read() if member.isfile() else b""
            if ext == "json":
                rows.setdefault(key, {}).update(json.loads(data))
            elif ext == "tokens.npy":
                rows.setdefault(key, {})["tokens"] = np.load(io.BytesIO(data), allow_pickle=False)
    ordered = [rows[k] for k in sorted(rows)]
    out = {}
    for col in columns:
        values = [r.get(col) for r in ordered]
        if col == "meta":
            values = [json.dumps(v if v is not None else {}) for v in values]
        out[col] = pa.array(values) if col != "tokens" else _list_array(values)
    return pa.table(out)


def _list_array(arrays: list[np.ndarray]) -> pa.Array:
    flat = np.concatenate(arrays) if arrays else np.zeros(0, np.uint32)
    offsets = np.zeros(len(arrays) + 1, np.int32)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


def read_errors(ds: Dataset) -> pa.Table:
    """All quarantined inputs (uri, member, reason, stage) with the unit they came from."""
    folder = ds.path("_errors")
    names = ["uri", "member", "reason", "stage", "unit"]
    tables = [pa.table({n: pa.array([], pa.string()) for n in names})]
    if not ds.fs.isdir(folder):
        return tables[0]
    for path in sorted(p for p in ds.fs.ls(folder, detail=False) if p.endswith(".parquet")):
        with ds.fs.open(path, "rb") as f:
            t = pq.read_table(f)
        unit = path.rsplit("/", 1)[-1][: -len(".parquet")]
        cols = {n: t[n].cast(pa.string()) if n in t.column_names else pa.nulls(len(t), pa.string())
                for n in names[:4]}
        tables.append(pa.table({**cols, "unit": pa.array([unit] * len(t), pa.string())}))
    return pa.concat_tables(tables)
