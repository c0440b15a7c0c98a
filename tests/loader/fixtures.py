"""Small tokenmill datasets written exactly per docs/formats.md, and S3 options for the moto server.

Documents are real text: Python standard library files, tokenized as bytes (ids 0-255,
EOS 256), so token statistics look like a byte-level tokenizer's output.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from tests.tm_testing import STDLIB

EOS = 256
FINGERPRINT = hashlib.sha256(b"tokenmill-test-bytes-tokenizer").hexdigest()


@functools.lru_cache(maxsize=1)
def stdlib_files() -> tuple[Path, ...]:
    """Non-empty stdlib .py files: the top level first, then the packages."""
    top = sorted(STDLIB.glob("*.py"))
    return tuple(f for f in top + sorted(set(STDLIB.rglob("*.py")) - set(top)) if f.stat().st_size > 0)


def stdlib_docs(n: int, max_len: int | None = None, start: int = 0) -> list[np.ndarray]:
    """n real documents: stdlib .py files as byte tokens with EOS appended (optionally cut)."""
    files = stdlib_files()[start:]
    docs = []
    for f in files[:n]:
        data = np.frombuffer(f.read_bytes()[:max_len], dtype=np.uint8).astype(np.uint16)
        docs.append(np.append(data, np.uint16(EOS)))
    assert len(docs) == n, f"only {len(docs)} stdlib files"
    return docs


def shard_table(docs: list[np.ndarray], dtype: str = "uint16", ids: list[str] | None = None,
                metadata: dict[bytes, bytes] | None = None, batch_rows: int | None = None) -> pa.Table:
    """A shard table with the contract's columns and schema metadata."""
    lengths = np.array([len(d) for d in docs], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate(docs).astype(dtype) if docs else np.empty(0, dtype)
    tokens = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values))
    ids = ids or [f"file:///doc/{i}" for i in range(len(docs))]
    table = pa.table({
        "id": pa.array(ids), "source": pa.array(ids), "modality": pa.array(["code"] * len(docs)),
        "tokens": tokens, "shape": pa.array([[int(n)] for n in lengths], pa.list_(pa.int32())),
        "n_bytes": pa.array(lengths.astype(np.int64)), "meta": pa.array(["{}"] * len(docs)),
    })
    meta = {b"tokenmill.format_version": b"1", b"tokenmill.tokenizer_fingerprint": FINGERPRINT.encode(),
            b"tokenmill.spec_hash": b"0" * 16, b"tokenmill.base_vocab_size": b"257"}
    return table.replace_schema_metadata({**meta, **(metadata or {})})


def write_arrow(path: Path, table: pa.Table, batch_rows: int | None = None) -> bytes:
    """Write an Arrow IPC file (record batches of batch_rows) and return its bytes."""
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=batch_rows)
    data = sink.getvalue().to_pybytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def write_dataset(root: Path, shards: list[list[np.ndarray]], dtype: str = "uint16",
                  metadata: dict[bytes, bytes] | None = None, batch_rows: int | None = None,
                  eos_id: int | None = EOS, name: str = "test") -> Path:
    """A dataset folder: dataset.json and shards/part-<16 hex>.arrow, one per list of docs."""
    entries = []
    for i, docs in enumerate(shards):
        shard = hashlib.sha256(f"{name}-{i}".encode()).hexdigest()[:16]
        rel = f"shards/part-{shard}.arrow"
        ids = [f"file:///{name}/{i}/{j}" for j in range(len(docs))]
        data = write_arrow(root / rel, shard_table(docs, dtype, ids, metadata), batch_rows)
        n_tokens = int(sum(len(d) for d in docs))
        entries.append({"name": f"part-{shard}", "unit": f"u-{shard}",
                        "files": {"arrow": {"path": rel, "size": len(data),
                                            "sha256": hashlib.sha256(data).hexdigest()}},
                        "n_samples": len(docs), "n_tokens": n_tokens, "n_bytes": n_tokens, "n_errors": 0})
    totals = {k: sum(e[k] for e in entries) for k in ("n_samples", "n_tokens", "n_bytes", "n_errors")}
    index = {"format": "tokenmill.dataset", "version": 1, "name": name, "spec_hash": "0" * 16,
             "modality": "code",
             "tokenizer": {"kind": "bytes", "fingerprint": FINGERPRINT, "vocab_size": 257, "eos_id": eos_id,
                           "files": []},
             "token_dtype": dtype, "formats": ["arrow"], "shards": entries,
             "totals": {"n_shards": len(entries), **totals}}
    (root / "dataset.json").write_text(json.dumps(index, indent=1))
    return root


def read_rows(root: Path) -> list[list[np.ndarray]]:
    """Every shard's token lists in index order, read with plain pyarrow (the independent view)."""
    index = json.loads((root / "dataset.json").read_text())
    out = []
    for entry in index["shards"]:
        table = ipc.open_file(pa.memory_map(str(root / entry["files"]["arrow"]["path"]))).read_all()
        out.append([np.asarray(x) for x in table.column("tokens").to_pylist()])
    return out


@pytest.fixture()
def s3_options(s3_server: str) -> dict[str, Any]:
    """fsspec storage_options for the session's moto S3 server (tests/conftest.py: s3_server)."""
    return {"client_kwargs": {"endpoint_url": s3_server}, "key": "testing", "secret": "testing"}


def upload(local_root: Path, bucket_uri: str, storage_options: dict[str, Any]) -> None:
    """Copy a local dataset folder to s3://bucket/prefix with s3fs."""
    import s3fs
    fs = s3fs.S3FileSystem(**storage_options)
    bucket = bucket_uri.removeprefix("s3://").split("/")[0]
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    for path in sorted(local_root.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{bucket_uri.removeprefix('s3://')}/{path.relative_to(local_root)}", path.read_bytes())


def make_loader(root: str, num_workers: int, **kwargs: Any) -> tuple[Any, Any]:
    """The resume tests' loader: TokenDataset (batches of 8 windows) under torchdata's StatefulDataLoader."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    from pipeline.loader.token_dataset import TokenDataset
    ds = TokenDataset(root, kwargs.pop("seq_len", 64), seed=7, shuffle_buffer=16, batch_size=8, **kwargs)
    return ds, StatefulDataLoader(ds, batch_size=None, num_workers=num_workers)


def epoch_batches(ds: Any, loader: Any, start_epoch: int, epochs: int) -> Iterator[tuple[int, Any]]:
    """A training loop's view: (epoch, batch) over epochs, with set_epoch before each."""
    for epoch in range(start_epoch, epochs):
        ds.set_epoch(epoch)
        for batch in loader:
            yield epoch, batch


def pack_stream(windows: list[dict[str, Any]]) -> np.ndarray:
    """The token streams unshuffled packed windows cover, one shard after the other: the first input
    of a shard's first window (the window after a padded one), then every real label."""
    out, restart = [], True
    for w in windows:
        labels = w["labels"].numpy()
        if restart:
            out.append(w["input_ids"].numpy()[:1])
        out.append(labels[labels != -100])
        restart = bool((labels == -100).any())
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def rows(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The windows of one item: a batch (windows layout) or a single window."""
    if item["input_ids"].dim() == 1:
        return [item]
    return [{k: v[i] for k, v in item.items()} for i in range(len(item["input_ids"]))]


def train_phase(make: Callable[[int], Any], world_size: int, num_workers: int, steps: int | None,
                start: Any = None) -> tuple[dict[int, dict[str, Any]], list[Any]]:
    """A training phase simulated in one process: each rank's dataset (`make(rank)`), copied once per
    DataLoader worker as a DataLoader does (0 workers: the dataset itself), gives its global batches in
    the order a DataLoader asks its workers, `steps` of them (None: to the end of the epoch). `start`
    is loaded into every rank first. Returns the windows by global position from the phase's start,
    and each rank's state as a StatefulDataLoader would save it."""
    by_position: dict[int, dict[str, Any]] = {}
    states = []
    for rank in range(world_size):
        copies = [make(rank) for _ in range(max(num_workers, 1))]
        for c in copies:
            if start is not None:
                c.load_state_dict(start)
        size, global_batch = copies[0].batch_size or 1, copies[0].global_batch
        passes = [c.windows(w, len(copies)) for w, c in enumerate(copies)]
        step = 0
        while steps is None or step < steps:
            item = next(passes[step % len(copies)], None)
            if item is None:  # that worker has no global batch left: nor has any after it
                break
            for j, w in enumerate(rows(item)):
                position = step * global_batch + rank * size + j
                assert position not in by_position, position
                by_position[position] = w
            step += 1
        states.append(copies[0].state_dict() if num_workers == 0 else {
            "_snapshot": {"_worker_snapshots": {f"worker_{i}": {"worker_id": i, "dataset_state": c.state_dict()}
                                                for i, c in enumerate(copies)}},
            "_steps_since_snapshot": 0})
    return by_position, states


def same_windows(got: dict[int, dict[str, Any]], want: list[dict[str, Any]]) -> int:
    """Assert that `got` holds exactly the windows of `want` by position; returns how many were compared."""
    assert sorted(got) == list(range(len(want))), (len(got), len(want))
    for i, w in enumerate(want):
        assert all(bool((got[i][k] == w[k]).all()) for k in ("input_ids", "labels")), i
    return len(want)
