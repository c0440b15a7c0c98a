"""Raw bytes as tokens: ids 0-255 are the byte values, 256 is EOS. Lossless for any input."""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.tokenizers.base import TokenBatch, Tokenizer


class ByteTokenizer(Tokenizer):
    kind = "bytes"
    engine = "numpy"

    def __init__(self, add_eos: bool = True) -> None:
        self.add_eos = add_eos
        self.vocab_size = 257
        self.eos_id = 256 if add_eos else None

    def options(self) -> dict[str, Any]:
        return {"add_eos": self.add_eos}

    def encode_batch(self, samples: list[Any]) -> TokenBatch:
        raw = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in samples]
        extra = 1 if self.add_eos else 0
        lengths = np.fromiter((len(b) + extra for b in raw), dtype=np.int64, count=len(raw))
        offsets = np.zeros(len(raw) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if not self.add_eos:
            return TokenBatch(np.frombuffer(b"".join(raw), dtype=np.uint8).astype(np.uint32), offsets)
        joined = b"".join(b + b"\x00" for b in raw)
        values = np.frombuffer(joined, dtype=np.uint8).astype(np.uint32)
        values[offsets[1:] - 1] = 256
        return TokenBatch(values, offsets)

    def decode(self, ids: np.ndarray) -> bytes:
        ids = np.asarray(ids)
        return ids[ids < 256].astype(np.uint8).tobytes()

    def token_bytes(self) -> list[bytes]:
        return [bytes([i]) for i in range(256)] + [b""]


def build_bytes(spec) -> ByteTokenizer:
    return ByteTokenizer(add_eos=spec.add_eos)
