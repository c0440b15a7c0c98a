"""WebDataset tar shards: `<key>.json` + `<key>.tokens.npy` per sample, fixed tar headers.

Keys are `<the shard's 16 hex>-s<row, 8 digits>` (`7528fd19c0a1b2e3-s00000042`): unique across
the dataset, as Megatron-Energon requires, and never a dot or a slash; the full id is in the
json member. The tar begins with `__meta__` (the shard's `tokenmill.*` Arrow metadata as a JSON
object) and, with the dynamic stage, `__vocab__` (the `tokenmill.dynamic_vocab` JSON, byte for
byte): names without an extension, which webdataset and energon do not take for samples, so a
tar describes itself and tokenmill's loader reads it like an Arrow shard. With
`sink.keep_source: true` the original bytes follow as `<key>.<original extension>`. Headers
carry mtime 0, uid/gid 0 and empty names, so equal samples give equal bytes. The writer also returns each sample's byte offset, from which
energon's `.tar.idx` is written (pipeline.sinks.energon) without reading the tar again.
"""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow as pa

from pipeline.dataset import layout
from pipeline.sinks.energon import tar_index

_JSON_COLUMNS = ("id", "source", "modality", "shape", "n_bytes")


def sample_key(shard: str, row: int) -> str:
    """`<16 hex>-s<row>`: the shard name without `part-`, so keys never repeat across shards."""
    return f"{shard.removeprefix('part-')}-s{row:08d}"


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _sample_jsons(table: pa.Table) -> list[bytes]:
    """The json member of every row (columns converted once, not per row)."""
    names = list(_JSON_COLUMNS) + [n for n in ("spans", "positions") if n in table.column_names]
    columns = {name: table.column(name).to_pylist() for name in names}
    metas = table.column("meta").to_pylist()
    out = []
    for row in range(table.num_rows):
        record = {name: columns[name][row] for name in names}
        record["meta"] = json.loads(metas[row] or "{}")
        out.append(json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return out


def _shard_metadata(table: pa.Table) -> tuple[bytes, bytes | None]:
    """The `__meta__` JSON (the shard's `tokenmill.*` metadata but the vocabulary) and the `__vocab__` bytes."""
    raw = table.schema.metadata or {}
    vocab = raw.get(layout.META_DYNAMIC.encode())
    meta = {k.decode(): v.decode() for k, v in raw.items()
            if k.startswith(layout.META_PREFIX.encode()) and k != layout.META_DYNAMIC.encode()}
    return json.dumps(meta, sort_keys=True).encode(), vocab


def tar_bytes(table: pa.Table, shard: str) -> tuple[bytes, list[int]]:
    """The WebDataset tar of a shard table (rows in table order), and the byte offset of each
    sample's first member followed by the end of the last member (energon's `.tar.idx`)."""
    tokens = table.column("tokens").combine_chunks()
    values = tokens.values.to_numpy(zero_copy_only=False)
    offsets = tokens.offsets.to_numpy()
    jsons = _sample_jsons(table)
    keep = "_source" in table.column_names  # sink.keep_source: the original member travels along
    sources = table.column("_source").to_pylist() if keep else None
    exts = table.column("_source_ext").to_pylist() if keep else None
    meta, vocab = _shard_metadata(table)
    buf, starts = io.BytesIO(), []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, layout.TAR_META_MEMBER, meta)
        if vocab:
            _add(tar, layout.TAR_VOCAB_MEMBER, vocab)
        for row in range(table.num_rows):
            key = sample_key(shard, row)
            starts.append(tar.offset)
            _add(tar, f"{key}.json", jsons[row])
            _add(tar, f"{key}.tokens.npy", _npy(values[offsets[row]:offsets[row + 1]]))
            if sources is not None:
                ext = exts[row] if exts[row] not in ("json", "npy") else f"source.{exts[row]}"
                _add(tar, f"{key}.{ext}", sources[row])
        starts.append(tar.offset)
    return buf.getvalue(), starts


def webdataset_files(table: pa.Table, shard: str) -> dict[str, bytes]:
    """The tar and its `.tar.idx`, by path in the output folder (the tar first)."""
    data, starts = tar_bytes(table, shard)
    path = layout.shard_file(shard, "webdataset")
    return {path: data, **{rel: tar_index(starts) for rel in layout.derived_files(path)}}
