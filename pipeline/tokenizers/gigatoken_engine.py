"""The gigatoken engine: a Rust byte-level BPE that loads the same tokenizer.json as `hf`.

gigatoken (PyPI, the engine behind Megatron-LM's preprocess_data_fast.py) returns a batch
as an awkward array: one flat uint32 buffer plus int64 offsets, which become a TokenBatch
without a Python object per token. Loaded from a path it needs neither `transformers` nor
`tokenizers`. Its ids are not guaranteed identical to HF's (measured: 1 of 5,724 real documents
differed), so `auto` uses it only when the probe shows it exact.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.errors import SpecError
from pipeline.tokenizers.base import TokenBatch


def engine_threads() -> int:
    """Threads an engine may use: RAYON_NUM_THREADS (the runner sets it per actor), else all cores."""
    return max(1, int(os.environ.get("RAYON_NUM_THREADS") or os.cpu_count() or 1))


def gigatoken_engine(path: str | Path) -> tuple[Callable[[list[str]], Any], Callable[[Any, int | None], TokenBatch]]:
    """(encode: documents -> awkward array, flatten: that array, eos_id -> TokenBatch) for a tokenizer.json."""
    try:
        import gigatoken
    except ImportError as exc:
        raise ImportError(f"tokenizer.engine: gigatoken is not installed ({exc}); pip install gigatoken") from None
    try:
        backend = gigatoken.Tokenizer.from_json(Path(path).read_bytes()).backend
    except (ValueError, RuntimeError, OSError) as exc:
        raise SpecError(f"tokenizer.engine: gigatoken cannot load {path}: {exc}") from None
    parallel = engine_threads() > 1  # one actor per core runs sequentially; the bench uses the thread pool
    backend.encode_batch(["load awkward and the pools now, not in the first unit"], parallel=parallel)

    def flatten(batch: Any, eos_id: int | None) -> TokenBatch:
        return TokenBatch.from_flat(*flat_arrays(batch), eos_id)

    return (lambda docs: backend.encode_batch(docs, parallel=parallel)), flatten


def flat_arrays(batch) -> tuple[np.ndarray, np.ndarray]:
    """(values uint32, offsets int64) of an awkward list array, zero-copy when it is packed."""
    layout = batch.layout
    if not hasattr(layout, "offsets"):  # a ListArray (starts/stops): pack it first
        import awkward as ak
        layout = ak.to_packed(batch).layout
    offsets = np.asarray(layout.offsets, dtype=np.int64)
    values = np.asarray(layout.content.data)
    if offsets[0] != 0:
        values, offsets = values[offsets[0]:offsets[-1]], offsets - offsets[0]
    return values[: offsets[-1]].astype(np.uint32, copy=False), offsets
