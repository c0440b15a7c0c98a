"""Arrow IPC file and Parquet shards, byte-identical for identical tables."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset import layout

_BATCH_ROWS = 8192  # record batches of a few thousand rows keep readers' memory bounded


def ipc_bytes(table: pa.Table) -> bytes:
    """An Arrow IPC file (uncompressed, so readers can memory-map it)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def parquet_bytes(table: pa.Table) -> bytes:
    """A zstd Parquet file with one row group per 8192 rows."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=_BATCH_ROWS)
    return sink.getvalue().to_pybytes()


def arrow_files(table: pa.Table, shard: str) -> dict[str, bytes]:
    return {layout.shard_file(shard, "arrow"): ipc_bytes(table)}


def parquet_files(table: pa.Table, shard: str) -> dict[str, bytes]:
    return {layout.shard_file(shard, "parquet"): parquet_bytes(table)}
