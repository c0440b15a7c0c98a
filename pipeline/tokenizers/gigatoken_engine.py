"""The gigatoken engine: a Rust byte-level BPE that loads the same tokenizer.json as `hf`.

gigatoken (PyPI, the engine behind Megatron-LM's preprocess_data_fast.py) returns a batch
as an awkward array: one flat uint32 buffer plus int64 offsets, which become a TokenBatch
without a Python object per token. Loaded from a path it needs neither `transformers` nor
`tokenizers`; a .tiktoken rank file loads under one of gigatoken's named split schemes. Its ids are
not guaranteed identical to the reference (measured: 1 of 5,724 real documents differed from HF's),
so `auto` uses it only when the probe shows it exact.
"""
from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.errors import SpecError
from pipeline.tokenizers.base import TokenBatch


def engine_threads() -> int:
    """Threads an engine may use: RAYON_NUM_THREADS (the runner sets it per actor), else all cores."""
    return max(1, int(os.environ.get("RAYON_NUM_THREADS") or os.cpu_count() or 1))


Engine = tuple[Callable[[list[str]], Any], Callable[[Any, int | None], TokenBatch]]


def gigatoken_engine(path: str | Path, allow_special: bool = True) -> Engine:
    """(encode: documents -> awkward array, flatten: that array, eos_id -> TokenBatch) for a tokenizer.json.

    Without allow_special the special added tokens are left out of what gigatoken loads, so their text
    in a document is encoded as text (as hf does with encode_special_tokens).
    """
    gigatoken = _import()
    data = Path(path).read_bytes()
    try:
        backend = gigatoken.Tokenizer.from_json(data if allow_special else without_special_tokens(data)).backend
    except (ValueError, RuntimeError, OSError) as exc:
        raise SpecError(f"tokenizer.engine: gigatoken cannot load {path}: {str(exc).splitlines()[0]}") from None
    return _batched(backend)


def gigatoken_tiktoken_engine(path: Path, scheme: str, special_tokens: dict[str, int]) -> Engine:
    """The same for a .tiktoken rank file (plain or gzip) under gigatoken's named split scheme."""
    gigatoken = _import()
    data = path.read_bytes()
    try:
        with tempfile.TemporaryDirectory(prefix="tokenmill-gigatoken-") as tmp:
            plain = path
            if data[:2] == b"\x1f\x8b":  # gigatoken reads plain files only
                plain = Path(tmp) / "ranks.tiktoken"
                plain.write_bytes(gzip.decompress(data))
            backend = gigatoken.Tokenizer.from_tiktoken(plain, pretokenizer=scheme,
                                                        special_tokens=special_tokens or None).backend
    except (ValueError, RuntimeError, OSError) as exc:
        raise SpecError(f"tokenizer.engine: gigatoken cannot load {path}: {str(exc).splitlines()[0]}") from None
    return _batched(backend)


def without_special_tokens(tokenizer_json: bytes) -> bytes:
    """The tokenizer.json without its special added tokens and post-processor (tokenmill adds EOS/BOS itself)."""
    model = json.loads(tokenizer_json)
    model["added_tokens"] = [t for t in model.get("added_tokens", []) if not t.get("special")]
    model["post_processor"] = None
    return json.dumps(model).encode()


def _import():
    try:
        import gigatoken
    except ImportError as exc:
        raise ImportError(f"tokenizer.engine: gigatoken is not installed ({exc}); pip install gigatoken") from None
    return gigatoken


def _batched(backend: Any) -> Engine:
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
