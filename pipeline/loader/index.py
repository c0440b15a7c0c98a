"""Loader side of the output contract: an opened dataset.json and its shards' token columns, checked.

Reading goes through the one dataset reader (pipeline.dataset.read): local Arrow shards are
memory-mapped (zero-copy: a document is a view into the page cache); remote shards are read
whole, one at a time, so memory holds at most the shards in flight, never the dataset.
Every shard is checked against the index before use.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from pipeline.dataset import layout
from pipeline.dataset.read import DatasetError, DatasetFolder, FolderView, IndexMissing, ShardRef, ShardUnreadable
from pipeline.dataset.records import DatasetIndex

_ARROW_TYPES = {"uint16": pa.uint16(), "uint32": pa.uint32()}
LOADER_FORMATS = ("arrow", "parquet")


class ShardError(RuntimeError):
    """A shard that cannot be used as the index describes it; the message names it."""

    def __init__(self, name: str, path: str, reason: str) -> None:
        super().__init__(f"shard {name} ({path}): {reason}")
        self.name, self.path, self.reason = name, path, reason


class ShardMissing(ShardError):
    """The index lists a shard whose file does not exist."""


@dataclass(frozen=True)
class OpenIndex(FolderView):
    """A validated dataset.json, its folder, and the Arrow (else Parquet) file of each shard, in index order."""

    folder: DatasetFolder
    record: DatasetIndex
    shards: tuple[ShardRef, ...]

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def tokenizer_fingerprint(self) -> str:
        return self.record.tokenizer.fingerprint

    @property
    def token_dtype(self) -> str:
        return self.record.token_dtype

    @property
    def eos_id(self) -> int | None:
        return self.record.tokenizer.eos_id

    @property
    def vocab_size(self) -> int | None:
        return self.record.tokenizer.vocab_size

    @property
    def fingerprint(self) -> str:
        """Identifies the data a loader state refers to: tokenizer, shard names and sizes."""
        items = [self.tokenizer_fingerprint] + [f"{s.name}:{s.n_samples}" for s in self.shards]
        return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]

    @property
    def identity(self) -> str:
        """Identifies a followed dataset across generations: its name and tokenizer."""
        return hashlib.sha256(f"{self.name}\n{self.tokenizer_fingerprint}".encode()).hexdigest()[:16]

    def without(self, names: set[str]) -> "OpenIndex":
        return replace(self, shards=tuple(s for s in self.shards if s.name not in names))

    def with_shards(self, shards: tuple[ShardRef, ...]) -> "OpenIndex":
        return replace(self, shards=shards)


def load_index(uri: str, storage_options: dict[str, Any] | None = None) -> OpenIndex:
    """Read and validate dataset.json (`uri` is the folder or the file itself)."""
    folder = DatasetFolder(uri, storage_options)
    try:
        record = folder.index()
    except IndexMissing as exc:
        raise FileNotFoundError(str(exc)) from None
    shards = []
    for shard in record.shards:
        ref = folder.shard_ref(shard, LOADER_FORMATS)
        if ref is None:
            raise DatasetError(f"{folder.path(layout.INDEX)}: shard {shard.name} has no arrow or parquet file "
                               f"(formats: {sorted(shard.files)}); the loader reads arrow or parquet")
        shards.append(ref)
    return OpenIndex(folder, record, tuple(shards))


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

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Every document's length and last token (0 for an empty one), without reading the tokens."""
        lengths = [np.diff(o).astype(np.int64) for o in self._offsets]
        last = [np.where(n > 0, v[np.maximum(o[1:], 1) - 1], 0) if len(v) else np.zeros(len(n), np.int64)
                for v, o, n in zip(self._values, self._offsets, lengths)]
        if not lengths:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(lengths), np.concatenate(last).astype(np.int64)

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


def open_shard(index: OpenIndex, ref: ShardRef) -> ShardData:
    """Open and check one shard: present, complete, same schema and tokenizer as the index."""
    try:
        table = index.folder.read_table(ref, ["tokens"])
    except ShardUnreadable as exc:
        kind = ShardMissing if exc.reason == "file not found" else ShardError
        raise kind(ref.name, ref.path, exc.reason) from None
    meta = table.schema.metadata or {}
    _check_schema(index, ref, table.schema, meta, table.num_rows)
    dynamic = json.loads(meta[_META_DYNAMIC]) if _META_DYNAMIC in meta else None
    return ShardData(ref, table.column("tokens"), dynamic)


_META_VERSION = layout.META_FORMAT_VERSION.encode()
_META_FINGERPRINT = layout.META_TOKENIZER.encode()
_META_DYNAMIC = layout.META_DYNAMIC.encode()


def _check_schema(index: OpenIndex, ref: ShardRef, schema: pa.Schema, meta: dict, n_rows: int) -> None:
    """Refuse a shard that is not the one the index describes."""
    def refuse(reason: str) -> None:
        raise ShardError(ref.name, ref.path, reason)
    if meta.get(_META_VERSION) != str(layout.SHARD_FORMAT_VERSION).encode():
        refuse(f"shard format_version {meta.get(_META_VERSION)!r}, this loader reads version "
               f"{layout.SHARD_FORMAT_VERSION}")
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
