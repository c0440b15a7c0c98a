"""Arrow IPC file and Parquet shards, byte-identical for identical tables."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset import layout

_BATCH_ROWS = 8192  # record batches of a few thousand rows keep readers' memory bounded


def ipc_bytes(table: pa.Table) -> bytearray:
    """An Arrow IPC file (uncompressed, so readers can memory-map it), written once into a buffer of its exact
    size, which a first pass that only counts bytes (MockOutputStream) gives: a growing BufferOutputStream
    copied what it held at each doubling and the whole file once more into `bytes`."""
    batches = table.to_batches(max_chunksize=_BATCH_ROWS)
    counted = pa.MockOutputStream()
    _write_ipc(counted, table.schema, batches)
    out = bytearray(counted.size())
    _write_ipc(pa.FixedSizeBufferWriter(pa.py_buffer(out)), table.schema, batches)
    return out


def _write_ipc(sink: pa.NativeFile, schema: pa.Schema, batches: list[pa.RecordBatch]) -> None:
    with pa.ipc.new_file(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)


def parquet_bytes(table: pa.Table) -> bytes:
    """A zstd Parquet file with one row group per 8192 rows."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=_BATCH_ROWS)
    return sink.getvalue().to_pybytes()


def arrow_files(table: pa.Table, shard: str) -> dict[str, bytearray]:
    return {layout.shard_file(shard, "arrow"): ipc_bytes(table)}


def parquet_files(table: pa.Table, shard: str) -> dict[str, bytes]:
    return {layout.shard_file(shard, "parquet"): parquet_bytes(table)}
