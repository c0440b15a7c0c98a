"""`format: parquet`: one sample per row of `source.column`, units are row-group ranges."""
from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import Quarantined
from pipeline.plan import WorkUnit
from pipeline.sources import RawRecord
from pipeline.spec import SourceSpec
from pipeline.storage import filesystem


def read_parquet(unit: WorkUnit, source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    """Rows of the unit's row groups; ids are `<uri>#<row index in the file>`."""
    for ref in unit.inputs:
        fs, path = filesystem(ref.uri, source.storage_options)
        with fs.open(path, "rb") as handle:
            pf = pq.ParquetFile(handle)
            if source.column not in pf.schema_arrow.names:
                yield Quarantined(ref.uri, "", f"parquet file has no column {source.column!r} "
                                  f"(columns: {', '.join(pf.schema_arrow.names)})", "read")
                continue
            first_row = sum(pf.metadata.row_group(g).num_rows for g in range(ref.start))
            end = pf.metadata.num_row_groups if ref.end is None else ref.end
            for g in range(ref.start, end):
                n_rows = pf.metadata.row_group(g).num_rows
                try:
                    column = pf.read_row_group(g, columns=[source.column]).column(0)
                except (OSError, pa.ArrowException) as exc:  # a corrupt row group: set it aside, go on
                    yield Quarantined(ref.uri, f"row group {g}", f"unreadable row group ({n_rows} rows): {exc}",
                                      "read")
                else:
                    yield from _rows(ref.uri, column, first_row)
                first_row += n_rows


def _rows(uri: str, column: pa.ChunkedArray, first_row: int) -> Iterator[RawRecord | Quarantined]:
    is_text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    is_binary = pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)
    if not (is_text or is_binary):
        yield Quarantined(uri, f"#{first_row}", f"column type {column.type} is not text or binary", "read")
        return
    for i, value in enumerate(column.to_pylist()):
        row = first_row + i
        if value is None:
            yield Quarantined(uri, f"#{row}", "null value", "read")
            continue
        size = len(value.encode("utf-8")) if isinstance(value, str) else len(value)
        yield RawRecord(f"{uri}#{row}", uri, value, size, member=f"#{row}")
