"""Training-side reader of tokenmill datasets: `TokenDataset` and `TokenMixture` (never imports ray).

The classes are re-exported lazily, so `pipeline.loader.index` (no torch) can be imported
on a machine without torch.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {"TokenDataset": "pipeline.loader.token_dataset", "StateError": "pipeline.loader.state",
            "cu_seqlens": "pipeline.loader.token_dataset", "expand_compact": "pipeline.loader.token_dataset",
            "ShardError": "pipeline.loader.index", "ShardMissing": "pipeline.loader.index",
            "TokenMixture": "pipeline.loader.mixture"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.loader' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(_EXPORTS[name]), name)
