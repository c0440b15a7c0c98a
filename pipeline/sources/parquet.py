"""`format: parquet`: one sample per row of `source.column`, units are row-group ranges.

Row groups are read in batches of rows from a buffered stream, and each value's length is
checked in Arrow before it becomes a Python object: a value over limits.max_bytes is
quarantined with its size and never copied. A file whose footer cannot be read (cut short,
not parquet) is quarantined with pyarrow's message; a corrupt row group is set aside and
the rest of the file is read.
"""
from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import Quarantined
from pipeline.plan import InputRef, WorkUnit
from pipeline.sources import RawRecord, read_inputs
from pipeline.sources.inputs import InputProblem, StorageIOError, open_input
from pipeline.spec import SourceSpec

BATCH_ROWS = 1024
_BUFFER = 1 << 20  # read column chunks a page at a time, not whole


def read_parquet(unit: WorkUnit, source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    """Rows of the unit's row groups; ids are `<uri>#<row index in the file>`."""
    return read_inputs(unit.inputs, lambda ref: _read_file(ref, source), "parquet file")


def _read_file(ref: InputRef, source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    with open_input(ref, source) as handle:
        try:
            pf = pq.ParquetFile(handle, buffer_size=_BUFFER, pre_buffer=False)
        except StorageIOError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow's own message says what is wrong
            raise InputProblem(f"not a readable parquet file: {type(exc).__name__}: {exc}") from exc
        if source.column not in pf.schema_arrow.names:
            yield Quarantined(ref.uri, "", f"parquet file has no column {source.column!r} "
                              f"(columns: {', '.join(pf.schema_arrow.names)})", "read")
            return
        first_row = sum(pf.metadata.row_group(g).num_rows for g in range(ref.start))
        end = pf.metadata.num_row_groups if ref.end is None else ref.end
        for g in range(ref.start, end):
            yield from _row_group(ref.uri, pf, g, first_row, source)
            first_row += pf.metadata.row_group(g).num_rows


def _row_group(uri: str, pf: pq.ParquetFile, g: int, first_row: int,
               source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    n_rows = pf.metadata.row_group(g).num_rows
    done = 0
    try:
        for batch in pf.iter_batches(BATCH_ROWS, row_groups=[g], columns=[source.column]):
            column = batch.column(0)
            yield from _rows(uri, column, first_row + done, source.limits.max_bytes)
            done += len(column)
    except StorageIOError:
        raise
    except (OSError, pa.ArrowException) as exc:  # a corrupt row group: set it aside, go on
        read = f", {done} read before the error" if done else ""
        yield Quarantined(uri, f"row group {g}", f"unreadable row group ({n_rows} rows{read}): {exc}", "read")


def _rows(uri: str, column: pa.Array, first_row: int, limit: int) -> Iterator[RawRecord | Quarantined]:
    is_text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    is_binary = pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)
    if not (is_text or is_binary):
        yield Quarantined(uri, f"#{first_row}", f"column type {column.type} is not text or binary", "read")
        return
    sizes = pc.binary_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    over = sizes > limit
    if over.any():  # drop oversize values before any of them becomes a Python object
        column = pc.if_else(pa.array(over), pa.nulls(len(column), column.type), column)
    for i, value in enumerate(column.to_pylist()):
        row = first_row + i
        if over[i]:
            yield Quarantined(uri, f"#{row}", f"value is {int(sizes[i])} bytes, over limits.max_bytes={limit}", "read")
        elif value is None:
            yield Quarantined(uri, f"#{row}", "null value", "read")
        else:
            yield RawRecord(f"{uri}#{row}", uri, value, int(sizes[i]), member=f"#{row}")

