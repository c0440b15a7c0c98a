"""Readers by container format: a unit in, raw records (or quarantine entries) out."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pipeline.errors import Quarantined

if TYPE_CHECKING:
    from pipeline.plan import WorkUnit
    from pipeline.spec import SourceSpec


@dataclass
class RawRecord:
    """One sample as read: `data` is bytes (files, tar members) or str (jsonl, parquet text)."""

    id: str
    source: str
    data: bytes | str
    n_bytes: int
    member: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


Reader = Callable[["WorkUnit", "SourceSpec"], Iterator[RawRecord | Quarantined]]

# format -> "module:function"
SOURCES: dict[str, str] = {
    "files": "pipeline.sources.files:read_files",
    "lines": "pipeline.sources.lines:read_lines",
    "jsonl": "pipeline.sources.lines:read_jsonl",
    "parquet": "pipeline.sources.parquet:read_parquet",
    "webdataset": "pipeline.sources.webdataset:read_webdataset",
}


def reader_for(fmt: str) -> Reader:
    if fmt not in SOURCES:
        raise ValueError(f"source.format {fmt!r} has no reader; known: {', '.join(sorted(SOURCES))}")
    module, func = SOURCES[fmt].split(":")
    return getattr(importlib.import_module(module), func)
