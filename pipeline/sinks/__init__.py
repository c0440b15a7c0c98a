"""Sinks: a shard table -> the bytes of one output file per format (written atomically by unit.py)."""
from __future__ import annotations

import importlib
from typing import Callable

import pyarrow as pa

# format -> (file extension, "module:function" taking a table and returning bytes)
SINKS: dict[str, tuple[str, str]] = {
    "arrow": (".arrow", "pipeline.sinks.arrow:ipc_bytes"),
    "parquet": (".parquet", "pipeline.sinks.arrow:parquet_bytes"),
    "webdataset": (".tar", "pipeline.sinks.webdataset:tar_bytes"),
}


def writer_for(fmt: str) -> tuple[str, Callable[[pa.Table], bytes]]:
    ext, target = SINKS[fmt]
    module, func = target.split(":")
    return ext, getattr(importlib.import_module(module), func)
