"""`binary-bpe`: a byte-level BPE for binaries trained by `tokenmill train --modality binary`.

Bytes go in as the Latin-1 characters of the same values and come back by concatenating
each id's token string, so decode(encode(x)) == x for every byte string.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import SpecError
from pipeline.storage import local_file
from pipeline.tokenizers.base import TokenBatch, Tokenizer
from pipeline.tokenizers.text import load_hf_core

EOS_TOKEN = "<|endoftext|>"


class BinaryBPE(Tokenizer):
    """The `binary-bpe` tokenizer (Hugging Face tokenizers engine)."""

    kind = "binary-bpe"
    engine = "hf"

    def __init__(self, path: str, add_eos: bool = True) -> None:
        self.path = local_file(path)
        self.core = load_hf_core(self.path)
        self.add_eos = add_eos
        self.vocab_size = self.core.get_vocab_size(with_added_tokens=True)
        eos = self.core.token_to_id(EOS_TOKEN)
        if add_eos and eos is None:
            raise SpecError(f"tokenizer.add_eos: {path} has no {EOS_TOKEN} token; set add_eos: false")
        self.eos_id = eos if add_eos else None
        self._strings = [self.core.id_to_token(i) or "" for i in range(self.vocab_size)]

    def files(self) -> list[Path]:
        return [self.path]

    def options(self) -> dict[str, Any]:
        return {"add_eos": self.add_eos}

    def encode_batch(self, samples: list[Any]) -> TokenBatch:
        texts = [s.decode("latin-1") if isinstance(s, (bytes, bytearray)) else s for s in samples]
        ids = [e.ids for e in self.core.encode_batch_fast(texts, add_special_tokens=False)]
        return TokenBatch.from_lists(ids, self.eos_id)

    def decode(self, ids: np.ndarray, shape: list[int] | None = None) -> bytes:
        special = {self.core.token_to_id(EOS_TOKEN)}
        return "".join(self._strings[int(i)] for i in np.asarray(ids) if int(i) not in special).encode("latin-1")

    def token_bytes(self) -> list[bytes]:
        return [b"" if s == EOS_TOKEN else s.encode("latin-1") for s in self._strings]


def build_binary_bpe(spec) -> BinaryBPE:
    return BinaryBPE(spec.path, spec.add_eos)
