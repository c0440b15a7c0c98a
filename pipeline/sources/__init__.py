"""Readers by container format: a unit in, raw records (or quarantine entries) out.

A reader never fails its unit for one input: an entry the listing could not read, an input
that is gone or changed, and any exception while reading one input (a truncated parquet
footer, a cut gzip stream) end that input with a quarantine entry naming the library's
message. Only `StorageIOError` (storage I/O that may pass) escapes, so the unit is retried.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from pipeline.errors import Quarantined
from pipeline.sources.inputs import InputProblem, StorageIOError

if TYPE_CHECKING:
    from pipeline.plan import InputRef, WorkUnit
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


def read_inputs(refs: Iterable["InputRef"], read_one: Callable[["InputRef"], Iterator[RawRecord | Quarantined]],
                what: str = "input") -> Iterator[RawRecord | Quarantined]:
    """Each input's records; listing problems and failing inputs become quarantine entries."""
    for ref in refs:
        if ref.problem:
            yield Quarantined(ref.uri, "", ref.problem, "list")
            continue
        try:
            yield from read_one(ref)
        except StorageIOError:
            raise
        except InputProblem as exc:
            yield Quarantined(ref.uri, "", str(exc), "read")
        except Exception as exc:  # noqa: BLE001 - whatever the library raised, it is this input's fault
            yield Quarantined(ref.uri, "", f"unreadable {what}: {type(exc).__name__}: {exc}", "read")
