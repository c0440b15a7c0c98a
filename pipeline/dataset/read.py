"""The one reader of a tokenmill output folder: index, ledger, run state, quarantine, shards.

Used by the loader, the report, lineage, inspect, status, export and the job itself.
Everything goes through fsspec, so a dataset on S3 reads like a local one; local Arrow
shards are memory-mapped (a column is a view into the page cache), remote ones are read
whole, one at a time. Records are validated (pipeline.dataset.records): a ledger entry
that fails is reported as a problem with its file name, never trusted.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pipeline.dataset import layout
from pipeline.dataset.records import (QUARANTINE_FIELDS, DatasetIndex, IndexShard, LedgerEntry, RecordError,
                                      RunState)
from pipeline.storage import Storage

log = logging.getLogger(__name__)

READ_ORDER = ("arrow", "parquet", "webdataset")


class DatasetError(ValueError):
    """An output folder that cannot be read as a tokenmill dataset; the message says why and what to do."""


class IndexMissing(DatasetError):
    """The folder has no dataset.json (yet): no run has finished there."""


class ShardUnreadable(DatasetError):
    """A shard file that is missing, truncated or not what the index says."""

    def __init__(self, ref: "ShardRef", reason: str) -> None:
        super().__init__(f"shard {ref.name} ({ref.path}): {reason}")
        self.ref, self.reason = ref, reason


@dataclass(frozen=True)
class ShardRef:
    """One shard file to read: the shard's index entry, the chosen format and where its file is."""

    name: str
    unit: str
    fmt: str
    rel: str    # path relative to the dataset folder (shards/part-....arrow)
    path: str   # path in the folder's filesystem
    n_samples: int
    n_tokens: int
    n_bytes: int
    size: int | None
    sha256: str = ""


@dataclass
class LedgerScan:
    """The valid ledger entries by unit id, and for each entry that was not valid its file and one line why."""

    entries: dict[str, LedgerEntry] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # _ledger/<name> -> "<file>: reason"

    def sorted(self) -> list[LedgerEntry]:
        return [self.entries[k] for k in sorted(self.entries)]


class DatasetFolder:
    """An output folder (local path or any fsspec URL), read as untrusted input."""

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None) -> None:
        uri = str(uri)
        if uri.rstrip("/").endswith(f"/{layout.INDEX}") or uri == layout.INDEX:  # the index file itself
            uri = posixpath.dirname(uri.rstrip("/")) or "."
        self.uri = uri.rstrip("/") or "/"
        self.storage = Storage(self.uri, storage_options)
        self.fs, self.root, self.local = self.storage.fs, self.storage.root or "/", self.storage.local

    @classmethod
    def of(cls, storage: Storage) -> "DatasetFolder":
        """The reader of a folder already opened for writing (same filesystem object)."""
        folder = cls.__new__(cls)
        folder.uri, folder.storage = storage.uri, storage
        folder.fs, folder.root, folder.local = storage.fs, storage.root or "/", storage.local
        return folder

    def path(self, rel: str) -> str:
        return self.storage.path(rel)

    def exists(self) -> bool:
        return self.fs.isdir(self.root)

    # --- records -----------------------------------------------------------------------------------
    def index(self) -> DatasetIndex:
        """dataset.json, validated; DatasetError (with what to do) when it is missing or corrupt."""
        try:
            data = self.storage.read_bytes(layout.INDEX)
        except FileNotFoundError:
            where = "no such folder" if not self.exists() else f"no {layout.INDEX}"
            raise IndexMissing(f"{self.uri}: not a tokenmill dataset ({where}; "
                               "`tokenmill run job.yaml` makes one)") from None
        except IsADirectoryError:
            raise DatasetError(f"{self.uri}: {layout.INDEX} is a folder, not an index") from None
        try:
            return DatasetIndex.parse(data, self.path(layout.INDEX))
        except RecordError as exc:
            raise DatasetError(f"{exc}; run the job again to rebuild it from the ledger") from None

    def index_or_problem(self) -> tuple[DatasetIndex | None, str | None]:
        """The index, or None and why, without advice (None, None when there is none yet)."""
        if self.storage.size(layout.INDEX) is None:
            return None, None
        try:
            return DatasetIndex.parse(self.storage.read_bytes(layout.INDEX), self.path(layout.INDEX)), None
        except (RecordError, OSError) as exc:
            return None, str(exc)

    def ledger(self) -> LedgerScan:
        """Every `_ledger/<unit>.json`; foreign names are ignored, invalid entries reported."""
        scan = LedgerScan()
        for name, info in sorted(self.storage.list_detail(layout.LEDGER_DIR).items()):
            if not name.endswith(".json") or layout.TEMPORARY.fullmatch(name) or info["type"] != "file":
                continue
            rel = f"{layout.LEDGER_DIR}/{name}"
            try:
                entry = LedgerEntry.parse(self.storage.read_bytes(rel), rel)
            except (RecordError, OSError) as exc:
                scan.problems[rel] = str(exc) if isinstance(exc, RecordError) else f"{rel}: unreadable ({exc})"
                continue
            if name != f"{entry.unit}.json":
                scan.problems[rel] = f"{rel}: holds unit {entry.unit}, but its file name says otherwise"
                continue
            scan.entries[entry.unit] = entry
        return scan

    def run_state(self) -> RunState | None:
        try:
            return RunState.parse(self.storage.read_bytes(layout.RUN_STATE), layout.RUN_STATE)
        except FileNotFoundError:
            return None
        except RecordError as exc:
            log.warning("ignoring %s", exc)
            return None

    def errors(self) -> pa.Table:
        """All quarantined inputs (uri, member, reason, stage) with the unit they came from."""
        names = [*QUARANTINE_FIELDS, "unit"]
        tables = [pa.table({n: pa.array([], pa.string()) for n in names})]
        for name in sorted(self.storage.list_detail(layout.ERROR_DIR)):
            if not layout.owned_errors_file(name) or layout.TEMPORARY.fullmatch(name):
                continue
            with self.fs.open(self.path(f"{layout.ERROR_DIR}/{name}"), "rb") as f:
                t = pq.read_table(f)
            cols = {n: t[n].cast(pa.string()) if n in t.column_names else pa.nulls(len(t), pa.string())
                    for n in QUARANTINE_FIELDS}
            unit = name[: -len(".parquet")]
            tables.append(pa.table({**cols, "unit": pa.array([unit] * len(t), pa.string())}))
        return pa.concat_tables(tables)

    def foreign(self) -> list[str]:
        """Paths in the folder that are not tokenmill's (kept as they are; `status` lists them)."""
        out = [n for n in self.storage.list_detail("") if not layout.owned_root_name(n)]
        for folder, owned in layout.OWNED_IN.items():
            out += [f"{folder}/{n}" for n in self.storage.list_detail(folder) if not owned(n)]
        return sorted(out)

    # --- shards ------------------------------------------------------------------------------------
    def shard_ref(self, shard: IndexShard | LedgerEntry, order: tuple[str, ...] = READ_ORDER) -> ShardRef | None:
        """The first format of `order` that the shard has, or None."""
        name = shard.name if isinstance(shard, IndexShard) else shard.shard
        for fmt in order:
            info = shard.files.get(fmt)
            if info is not None:
                return ShardRef(name=name, unit=shard.unit, fmt=fmt, rel=info.path, path=self.path(info.path),
                                n_samples=shard.n_samples, n_tokens=shard.n_tokens, n_bytes=shard.n_bytes,
                                size=info.size, sha256=info.sha256)
        return None

    def shard_sizes(self) -> dict[str, int]:
        """Sizes of tokenmill's shard files on storage, by relative path (one listing)."""
        return {f"{layout.SHARD_DIR}/{n}": i["size"] for n, i in self.storage.list_detail(layout.SHARD_DIR).items()
                if i["type"] == "file" and layout.SHARD_FILE.fullmatch(n)}

    def sha256(self, rel: str) -> str | None:
        """The sha256 of a file as stored (read in chunks), or None when it is not there."""
        digest = hashlib.sha256()
        try:
            with self.fs.open(self.path(rel), "rb") as f:
                while chunk := f.read(8 << 20):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        return digest.hexdigest()

    def read_table(self, ref: ShardRef, columns: list[str] | None = None) -> pa.Table:
        """Columns of one shard (all when None), with the shard's schema metadata; checked against its size."""
        try:
            if ref.fmt == "webdataset":
                with self.fs.open(ref.path, "rb") as f:
                    return read_tar(f, columns or ["id", "tokens", "meta"])
            if ref.fmt == "parquet":
                return self._parquet(ref, columns)
            return _select(ipc.open_file(self._arrow_source(ref)).read_all(), columns)
        except FileNotFoundError:
            raise ShardUnreadable(ref, "file not found") from None
        except (pa.ArrowInvalid, OSError, tarfile.TarError, ValueError) as exc:
            if isinstance(exc, ShardUnreadable):
                raise
            raise ShardUnreadable(ref, f"unreadable, truncated or corrupt: {exc}") from exc

    def _arrow_source(self, ref: ShardRef) -> Any:
        """A memory map for a local file (zero copy), else the whole object read once."""
        if self.local:
            self._check_size(ref, self.fs.size(ref.path))
            return pa.memory_map(ref.path)
        data = self.fs.cat_file(ref.path)
        self._check_size(ref, len(data))
        return pa.py_buffer(data)

    def _parquet(self, ref: ShardRef, columns: list[str] | None) -> pa.Table:
        if self.local:
            self._check_size(ref, self.fs.size(ref.path))
            schema = pq.read_schema(ref.path)
            keep = None if columns is None else [c for c in columns if c in schema.names]
            return pq.read_table(ref.path, columns=keep, memory_map=True).replace_schema_metadata(schema.metadata)
        with self.fs.open(ref.path, "rb") as f:
            schema = pq.read_schema(f)
            f.seek(0)
            keep = None if columns is None else [c for c in columns if c in schema.names]
            return pq.read_table(f, columns=keep).replace_schema_metadata(schema.metadata)

    @staticmethod
    def _check_size(ref: ShardRef, found: int) -> None:
        if ref.size is not None and found != ref.size:
            raise ShardUnreadable(ref, f"truncated or changed: {found} bytes on storage, the index says {ref.size}")


def _select(table: pa.Table, columns: list[str] | None) -> pa.Table:
    return table if columns is None else table.select([c for c in columns if c in table.column_names])


def read_tar(fileobj: Any, columns: list[str]) -> pa.Table:
    """Rows of a WebDataset shard: <key>.json carries the fields, <key>.tokens.npy the tokens;
    `__meta__` and `__vocab__` become the table's metadata, as in an Arrow shard."""
    rows: dict[str, dict] = {}
    metadata: dict[str, str | bytes] = {}
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in tar:
            key, _, ext = member.name.partition(".")
            data = tar.extractfile(member).read() if member.isfile() else b""
            if member.name == layout.TAR_META_MEMBER:
                metadata.update(json.loads(data))
            elif member.name == layout.TAR_VOCAB_MEMBER:
                metadata[layout.META_DYNAMIC] = data
            elif ext == "json":
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
    return pa.table(out, metadata=metadata or None)


def _list_array(arrays: list[np.ndarray]) -> pa.Array:
    flat = np.concatenate(arrays) if arrays else np.zeros(0, np.uint32)
    offsets = np.zeros(len(arrays) + 1, np.int32)
    np.cumsum([len(a) for a in arrays], out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


class FolderView:
    """Where an opened dataset lives, for classes that hold a `folder` (Dataset, the loader's OpenIndex)."""

    folder: DatasetFolder

    @property
    def uri(self) -> str:
        return self.folder.uri

    @property
    def fs(self) -> Any:
        return self.folder.fs

    @property
    def root(self) -> str:
        return self.folder.root

    @property
    def local(self) -> bool:
        return self.folder.local

    def path(self, rel: str) -> str:
        return self.folder.path(rel)


@dataclass(frozen=True)
class Dataset(FolderView):
    """An opened dataset: its folder, validated index and ledger (entries sorted by unit id)."""

    folder: DatasetFolder
    index: DatasetIndex
    ledger: list[LedgerEntry]
    ledger_problems: list[str]

    @property
    def base_vocab_size(self) -> int:
        return self.index.tokenizer.vocab_size

    def shard_refs(self, order: tuple[str, ...] = READ_ORDER) -> tuple[list[ShardRef], list[dict]]:
        """The index's shards split into those on storage and those missing (name, paths)."""
        present = set(self.folder.shard_sizes())
        found, missing = [], []
        for shard in self.index.shards:
            ref = self.folder.shard_ref(shard, order)
            if ref is None or ref.rel not in present:
                missing.append({"name": shard.name, "paths": [f.path for f in shard.files.values()]})
            else:
                found.append(ref)
        return found, missing


def open_dataset(uri: str, storage_options: dict[str, Any] | None = None) -> Dataset:
    """Open a dataset for reading, or raise DatasetError naming the problem and what to do."""
    folder = DatasetFolder(uri, storage_options)
    index = folder.index()
    scan = folder.ledger()
    for problem in scan.problems.values():
        log.warning("skipping ledger entry: %s", problem)
    return Dataset(folder, index, scan.sorted(), sorted(scan.problems.values()))
