"""Sinks: a shard table -> the files of that shard in one format (written atomically by unit.py).

Each writer returns {path in the output folder: bytes}: the shard file first, then the files
derived from it (a tar's `.tar.idx`, pipeline.dataset.layout.derived_files), which the ledger
entry does not list: they are deleted with their shard file and rebuilt from it when missing.
"""
from __future__ import annotations

import importlib
from typing import Callable

import pyarrow as pa

# format -> "module:function" taking (table, shard name) and returning {path: bytes}
SINKS: dict[str, str] = {
    "arrow": "pipeline.sinks.arrow:arrow_files",
    "parquet": "pipeline.sinks.arrow:parquet_files",
    "webdataset": "pipeline.sinks.webdataset:webdataset_files",
}


def files_for(fmt: str) -> Callable[[pa.Table, str], dict[str, bytes]]:
    module, func = SINKS[fmt].split(":")
    return getattr(importlib.import_module(module), func)
