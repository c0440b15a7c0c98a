"""Loader side of the output contract: read dataset.json and open its shards, checked.

Local Arrow shards are memory-mapped (zero-copy: a document is a view into the page
cache); remote shards are read whole, one at a time, so memory holds at most the shards
in flight, never the dataset. Every shard is checked against the index before use.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from pipeline.storage import filesystem, is_local


TOKEN_DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
_ARROW_TYPES = {"uint16": pa.uint16(), "uint32": pa.uint32()}
_META_FINGERPRINT = b"tokenmill.tokenizer_fingerprint"
_META_VERSION = b"tokenmill.format_version"
_META_DYNAMIC = b"tokenmill.dynamic_vocab"


class ShardError(RuntimeError):
    """A shard that cannot be used as the index describes it; the message names it."""

    def __init__(self, name: str, path: str, reason: str) -> None:
        super().__init__(f"shard {name} ({path}): {reason}")
        self.name, self.path, self.reason = name, path, reason


class ShardMissing(ShardError):
    """The index lists a shard whose file does not exist."""


@dataclass(frozen=True)
class ShardRef:
    """One shard as listed in dataset.json: where its rows are and how many."""

    name: str
    path: str
    fmt: str
    n_samples: int
    size: int | None


@dataclass(frozen=True)
class DatasetIndex:
    """A parsed dataset.json with its filesystem; shards in index (= input) order."""

    uri: str
    fs: Any
    local: bool
    name: str
    tokenizer_fingerprint: str
    token_dtype: str
    eos_id: int | None
    vocab_size: int | None
    shards: tuple[ShardRef, ...]

    @property
    def fingerprint(self) -> str:
        """Identifies the data a loader state refers to: tokenizer, shard names and sizes."""
        items = [self.tokenizer_fingerprint] + [f"{s.name}:{s.n_samples}" for s in self.shards]
        return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]

    def without(self, names: set[str]) -> "DatasetIndex":
        kept = tuple(s for s in self.shards if s.name not in names)
        return DatasetIndex(self.uri, self.fs, self.local, self.name, self.tokenizer_fingerprint,
                            self.token_dtype, self.eos_id, self.vocab_size, kept)


def load_index(uri: str, storage_options: dict[str, Any] | None = None) -> DatasetIndex:
    """Read dataset.json (`uri` is the file or the folder that holds it)."""
    fs, path = filesystem(uri, storage_options)
    if not path.endswith(".json"):
        path = posixpath.join(path.rstrip("/"), "dataset.json")
    try:
        doc = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        raise FileNotFoundError(f"no dataset index at {uri} (looked for {path})") from None
    if doc.get("format") != "tokenmill.dataset" or doc.get("version") != 1:
        raise ValueError(f"{path}: not a tokenmill dataset index of version 1 "
                         f"(format={doc.get('format')!r}, version={doc.get('version')!r})")
    root = posixpath.dirname(path)
    shards = tuple(_shard_ref(root, s, path) for s in doc["shards"])
    tok = doc["tokenizer"]
    if doc["token_dtype"] not in TOKEN_DTYPES:
        raise ValueError(f"{path}: token_dtype {doc['token_dtype']!r} is not uint16 or uint32")
    return DatasetIndex(uri, fs, is_local(fs), doc.get("name", ""), tok["fingerprint"],
                        doc["token_dtype"], tok.get("eos_id"), tok.get("vocab_size"), shards)


def _shard_ref(root: str, entry: dict[str, Any], index_path: str) -> ShardRef:
    """Pick the Arrow file (else Parquet) of one index entry; refuse paths leaving the root."""
    files = entry.get("files", {})
    fmt = "arrow" if "arrow" in files else "parquet" if "parquet" in files else None
    if fmt is None:
        raise ValueError(f"{index_path}: shard {entry['name']} has no arrow or parquet file "
                         f"(formats: {sorted(files)}); the loader reads arrow or parquet")
    rel = files[fmt]["path"]
    if rel.startswith("/") or ".." in rel.split("/"):
        raise ValueError(f"{index_path}: shard {entry['name']} path {rel!r} leaves the dataset folder")
    return ShardRef(entry["name"], posixpath.join(root, rel), fmt, int(entry["n_samples"]),
                    files[fmt].get("size"))


class ShardData:
    """The token lists of one opened shard; `docs(rows)` returns views, not copies."""

    def __init__(self, ref: ShardRef, column: pa.ChunkedArray, dynamic: Any) -> None:
        self.ref = ref
        chunks = [c for c in column.chunks if len(c)]
        self._values = [c.values.to_numpy(zero_copy_only=True) for c in chunks]
        self._offsets = [c.offsets.to_numpy(zero_copy_only=True) for c in chunks]
        self._starts = np.cumsum([0] + [len(c) for c in chunks])
        self.dynamic = dynamic
        self._vocab: Any = None

    def docs(self, start: int, stop: int) -> list[np.ndarray]:
        """Documents of rows [start, stop), as views into the shard's buffers."""
        out: list[np.ndarray] = []
        for values, offsets, c0, c1 in zip(self._values, self._offsets, self._starts, self._starts[1:]):
            lo, hi = max(start, c0) - c0, min(stop, c1) - c0
            if lo < hi:
                o = offsets[lo:hi + 1].tolist()
                out.extend(values[a:b] for a, b in zip(o, o[1:]))
        return out

    def batches(self, expand: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(tokens, document lengths) per record batch, in row order; tokens contiguous."""
        for values, offsets, c0, c1 in zip(self._values, self._offsets, self._starts, self._starts[1:]):
            if expand and self.dynamic is not None:
                docs = self.expanded(int(c0), int(c1))
                yield np.concatenate(docs), np.array([len(d) for d in docs], dtype=np.int64)
            else:
                yield values[offsets[0]:offsets[-1]], np.diff(offsets).astype(np.int64)

    def expanded(self, start: int, stop: int) -> list[np.ndarray]:
        """Like `docs`, with dynamic-tokenization ids expanded to base ids (the shard's vocabulary)."""
        docs = self.docs(start, stop)
        if self.dynamic is None:
            return docs
        if self._vocab is None:
            from pipeline.stages.dynamic import DynamicVocab  # only datasets made with the dynamic stage
            self._vocab = DynamicVocab(self.dynamic)
        return [self._vocab.expand(d, start + i) for i, d in enumerate(docs)]


def open_shard(index: DatasetIndex, ref: ShardRef) -> ShardData:
    """Open and check one shard: present, complete, same schema and tokenizer as the index."""
    try:
        table = _read_tokens(index, ref)
    except FileNotFoundError:
        raise ShardMissing(ref.name, ref.path, "file not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise ShardError(ref.name, ref.path, f"unreadable, truncated or corrupt: {exc}") from exc
    meta = table.schema.metadata or {}
    _check_schema(index, ref, table.schema, meta, table.num_rows)
    dynamic = json.loads(meta[_META_DYNAMIC]) if _META_DYNAMIC in meta else None
    return ShardData(ref, table.column("tokens"), dynamic)


def _read_tokens(index: DatasetIndex, ref: ShardRef) -> pa.Table:
    """Memory-map a local Arrow file; read a remote one whole (it streams, then is held)."""
    if index.local and ref.size is not None and os.path.getsize(ref.path) != ref.size:
        raise ShardError(ref.name, ref.path, f"truncated or changed: {os.path.getsize(ref.path)} "
                                             f"bytes on disk, index says {ref.size}")
    if ref.fmt == "parquet":
        source = ref.path if index.local else index.fs.open(ref.path, "rb")
        return pq.read_table(source, columns=["tokens"], memory_map=index.local)
    if index.local:
        return ipc.open_file(pa.memory_map(ref.path)).read_all()
    data = index.fs.cat_file(ref.path)
    if ref.size is not None and len(data) != ref.size:
        raise ShardError(ref.name, ref.path, f"truncated or changed: {len(data)} bytes, index says {ref.size}")
    return ipc.open_file(pa.py_buffer(data)).read_all()


def _check_schema(index: DatasetIndex, ref: ShardRef, schema: pa.Schema, meta: dict, n_rows: int) -> None:
    """Refuse a shard that is not the one the index describes."""
    def refuse(reason: str) -> None:
        raise ShardError(ref.name, ref.path, reason)
    if meta.get(_META_VERSION) != b"1":
        refuse(f"shard format_version {meta.get(_META_VERSION)!r}, this loader reads version 1")
    found = meta.get(_META_FINGERPRINT, b"").decode()
    if found != index.tokenizer_fingerprint:
        refuse(f"tokenizer fingerprint {found[:16]!r} differs from the index's "
               f"{index.tokenizer_fingerprint[:16]!r}; the shard was made with another tokenizer")
    want = _ARROW_TYPES[index.token_dtype]
    field = schema.field("tokens") if "tokens" in schema.names else None
    if field is None or not pa.types.is_list(field.type) or field.type.value_type != want:
        refuse(f"tokens column is {field.type if field else 'missing'}, index says list<{want}>")
    if n_rows != ref.n_samples:
        refuse(f"{n_rows} rows, index says {ref.n_samples}")
