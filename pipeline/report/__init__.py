"""Dataset statistics (dask) and the HTML report: `compute_stats`, `write_report`.

Re-exported lazily, so importing a submodule does not load dask or matplotlib.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = ("compute_stats", "write_report", "cli_report", "cli_stats", "text_summary")
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.report' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module("pipeline.report.build"), name)
