"""WebDataset tar shards: `<key>.tokens.npy` + `<key>.json` per sample, fixed tar headers.

Keys are `s` + the row index (never a dot or slash); the full id is in the json member.
With `sink.keep_source: true` the original bytes follow as `<key>.<original extension>`.
Headers carry mtime 0, uid/gid 0 and empty names, so equal samples give equal bytes.
"""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow as pa

_JSON_COLUMNS = ("id", "source", "modality", "shape", "n_bytes")


def sample_key(row: int) -> str:
    return f"s{row:08d}"


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


def tar_bytes(table: pa.Table) -> bytes:
    """The WebDataset tar of a shard table (rows in table order)."""
    tokens = table.column("tokens").combine_chunks()
    values = tokens.values.to_numpy(zero_copy_only=False)
    offsets = tokens.offsets.to_numpy()
    jsons = _sample_jsons(table)
    keep = "_source" in table.column_names  # sink.keep_source: the original member travels along
    sources = table.column("_source").to_pylist() if keep else None
    exts = table.column("_source_ext").to_pylist() if keep else None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for row in range(table.num_rows):
            key = sample_key(row)
            _add(tar, f"{key}.json", jsons[row])
            _add(tar, f"{key}.tokens.npy", _npy(values[offsets[row]:offsets[row + 1]]))
            if sources is not None:
                ext = exts[row] if exts[row] not in ("json", "npy") else f"source.{exts[row]}"
                _add(tar, f"{key}.{ext}", sources[row])
    return buf.getvalue()
