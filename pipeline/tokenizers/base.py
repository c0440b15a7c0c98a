"""The tokenizer interface every modality implements, and the flat token batch it returns."""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.dataset import layout


@dataclass
class TokenBatch:
    """Token ids of many samples as one flat array plus offsets (never lists of lists)."""

    values: np.ndarray   # all samples' tokens back to back: uint32 from an engine, a shard's dtype once cast
    offsets: np.ndarray  # int64, len n+1; sample i is values[offsets[i]:offsets[i+1]]
    shapes: list[list[int]] | None = None  # token grid per sample; None means [length]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def concat(cls, parts: list["TokenBatch"]) -> "TokenBatch":
        """One batch from several, in order."""
        if not parts:
            return cls(np.zeros(0, np.uint32), np.zeros(1, np.int64))
        dtypes = {p.values.dtype for p in parts}  # parts already in a shard's dtype stay in it (no second copy)
        values = np.concatenate([p.values for p in parts]).astype(dtypes.pop() if len(dtypes) == 1 else np.uint32,
                                                                   copy=False)
        starts = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])
        offsets = np.concatenate([[0]] + [p.offsets[1:] + s for p, s in zip(parts, starts)]).astype(np.int64)
        shapes = None
        if any(p.shapes is not None for p in parts):
            shapes = [s for p in parts for s in (p.shapes or [[int(n)] for n in p.lengths()])]
        return cls(values, offsets, shapes)

    def astype(self, dtype: str) -> "TokenBatch":
        """The same batch with its ids in `dtype` (a shard's token dtype: each batch is cast while it is small)."""
        return TokenBatch(self.values.astype(dtype, copy=False), self.offsets, self.shapes)

    @classmethod
    def from_lists(cls, seqs: Sequence[Sequence[int]], eos_id: int | None = None) -> "TokenBatch":
        """Flatten per-sample id sequences (one C-level pass, ~40 ns a token), appending eos_id when given."""
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
        values = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.uint32, count=int(lengths.sum()))
        return cls.from_flat(values, _offsets(lengths), eos_id)

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], eos_id: int | None = None) -> "TokenBatch":
        """One batch from per-sample id arrays, appending eos_id when given."""
        lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays))
        values = np.concatenate(arrays).astype(np.uint32, copy=False) if arrays else np.zeros(0, np.uint32)
        return cls.from_flat(values, _offsets(lengths), eos_id)

    @classmethod
    def from_flat(cls, values: np.ndarray, offsets: np.ndarray, eos_id: int | None = None) -> "TokenBatch":
        """A batch from flat ids and offsets; with eos_id, one EOS is inserted after each sample."""
        values = values.astype(np.uint32, copy=False)
        offsets = offsets.astype(np.int64, copy=False)
        if eos_id is None:
            return cls(values, offsets)
        return cls(insert_each(values, offsets, eos_id, after=True), offsets + np.arange(len(offsets), dtype=np.int64))


# Samples of this many tokens or more on average get their BOS/EOS by per-sample slice copies (measured here:
# ~0.6 ns a token plus ~1.1 us a sample) instead of np.insert (~2 ns a token); below it np.insert is faster.
SLICE_COPY_MIN_TOKENS = 1024


def insert_each(values: np.ndarray, offsets: np.ndarray, token: int, after: bool) -> np.ndarray:
    """`values` with `token` after (or before) each sample, exactly as np.insert at offsets[1:] (offsets[:-1])."""
    n_samples = len(offsets) - 1
    if n_samples <= 0 or len(values) < SLICE_COPY_MIN_TOKENS * n_samples:
        return np.insert(values, offsets[1:] if after else offsets[:-1], values.dtype.type(token))
    out = np.empty(len(values) + n_samples, values.dtype)
    shift = np.arange(n_samples, dtype=np.int64)
    marks = offsets[1:] + shift if after else offsets[:-1] + shift  # where each inserted token lands
    dest = offsets[:-1] + shift + (0 if after else 1)              # where each sample's tokens start
    for start, stop, to in zip(offsets[:-1].tolist(), offsets[1:].tolist(), dest.tolist()):
        out[to:to + stop - start] = values[start:stop]
    out[marks] = token
    return out


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


class Tokenizer:
    """Base class: subclasses set kind/vocab_size/eos_id and implement encode_batch/decode."""

    kind: str = ""
    vocab_size: int = 0
    eos_id: int | None = None
    engine: str = ""
    loads_model = False  # check() loads a model: a run's driver leaves that to the workers (pipeline.job)
    decodes = True  # decode() gives the sample back (text, pixels, audio); False: only its ids (an encoder alone)

    def check(self) -> None:
        """What needs the tokenizer's model itself (load it, one call on a blank input), a SpecError naming the
        field; nothing for a tokenizer that has no model apart from its files. `build_tokenizer` calls it."""

    def encode_batch(self, samples: list[Any]) -> TokenBatch:
        raise NotImplementedError

    def decode(self, ids: np.ndarray) -> Any:
        raise NotImplementedError

    def files(self) -> list[Path]:
        """Files that define this tokenizer; copied into OUT/tokenizer/ and fingerprinted."""
        return []

    def options(self) -> dict[str, Any]:
        """Options that change the ids, part of the fingerprint."""
        return {}

    def token_bytes(self) -> list[bytes] | None:
        """Byte string of each id for byte/text tokenizers (None where tokens are not bytes)."""
        return None

    def codebook(self) -> np.ndarray | None:
        """Code embeddings [K, D] for vector-quantizing tokenizers."""
        return None

    @cached_property
    def fingerprint(self) -> str:
        """The tokenizer by content: kind, options and its files' bytes, not their names or where they are
        (a moved or renamed tokenizer file is the same tokenizer). add_eos changes the shards (it is in the
        spec hash) but not the vocabulary. Hashed once per tokenizer object (its files are read at build)."""
        return self._fingerprint(with_names=False)

    @cached_property
    def named_fingerprint(self) -> str:
        """The fingerprint as tokenmill computed it before it ignored file names (indexes written then hold it)."""
        return self._fingerprint(with_names=True)

    def _fingerprint(self, with_names: bool) -> str:
        options = sorted((k, v) for k, v in self.options().items() if k != "add_eos")
        h = hashlib.sha256(f"{self.kind}\n{options}\n".encode())
        for path in self.files():
            data = path.read_bytes()
            h.update(path.name.encode() + b"\n" + data if with_names else b"%d\n" % len(data) + data)
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "fingerprint": self.fingerprint, "vocab_size": self.vocab_size,
                "eos_id": self.eos_id, "engine": self.engine,
                "files": [layout.tokenizer_file(p.name) for p in self.files()]}
