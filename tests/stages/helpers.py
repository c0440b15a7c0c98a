"""Test helpers: shard tables in the docs/formats.md layout and a byte-level BPE trained on real stdlib code."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.tokenizers.text import byte_level_alphabet
from tests.tm_testing import STDLIB  # noqa: F401 - re-exported for the stage tests

EOS = "<|endoftext|>"


def make_table(docs: list[list[int]], texts: list[str] | None = None, sources: list[str] | None = None,
               dtype: pa.DataType = pa.uint16(), modality: str = "code",
               shapes: list[list[int]] | None = None) -> pa.Table:
    """A shard table as the unit code hands it to the stages."""
    n = len(docs)
    sources = sources or [f"mem://doc{i}" for i in range(n)]
    cols = {
        "id": pa.array(sources, pa.string()),
        "source": pa.array(sources, pa.string()),
        "modality": pa.array([modality] * n, pa.string()),
        "tokens": pa.array([list(map(int, d)) for d in docs], pa.list_(dtype)),
        "shape": pa.array(shapes or [[len(d)] for d in docs], pa.list_(pa.int32())),
        "n_bytes": pa.array([len(t.encode()) if texts else len(d) for t, d in zip(texts or docs, docs)], pa.int64()),
        "meta": pa.array(["{}"] * n, pa.string()),
    }
    if texts is not None:
        cols["_text"] = pa.array(texts, pa.large_string())
    return pa.table(cols).replace_schema_metadata({b"tokenmill.format_version": b"1"})


def rows(table: pa.Table, column: str = "tokens") -> list[list[int]]:
    return table.column(column).to_pylist()


@dataclass
class RealBPE:
    """A byte-level BPE trained here on stdlib files, and those files."""

    tokenizer: object
    token_bytes: list[bytes | None]
    eos_id: int
    files: list[Path]

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids + [self.eos_id]

    def table(self, paths: list[Path]) -> pa.Table:
        texts = [p.read_text(encoding="utf-8") for p in paths]
        return make_table([self.encode(t) for t in texts], texts, [str(p) for p in paths])


def train_bpe(files: list[Path], vocab_size: int = 1000) -> RealBPE:
    """Train a small byte-level BPE with HF tokenizers; token bytes restored from its alphabet."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([str(f) for f in files], trainer)
    dec = byte_level_alphabet()
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    token_bytes: list[bytes | None] = [None] * tok.get_vocab_size()
    for piece, i in vocab.items():
        token_bytes[i] = bytes(dec[c] for c in piece)
    eos_id = tok.token_to_id(EOS)
    token_bytes[eos_id] = EOS.encode()
    return RealBPE(tok, token_bytes, eos_id, files)


def patches(img: np.ndarray, patch: int = 8) -> np.ndarray:
    """Non-overlapping patch vectors of an HxWxC image, row-major."""
    h, w = (img.shape[0] // patch) * patch, (img.shape[1] // patch) * patch
    grid = img[:h, :w].reshape(h // patch, patch, w // patch, patch, -1).swapaxes(1, 2)
    return grid.reshape(-1, patch * patch * img.shape[2])


def patch_codebook(images: list[np.ndarray], size: int, seed: int = 0) -> np.ndarray:
    """A VQ codebook: real patches drawn with a fixed seed (what k-means would start from)."""
    sample = np.concatenate([patches(im) for im in images])
    return sample[np.random.default_rng(seed).choice(len(sample), size, replace=False)].astype(np.float32)


def vq_grid(img: np.ndarray, codebook: np.ndarray, patch: int = 8) -> np.ndarray:
    """Nearest code of every patch, as a [rows, cols] grid (the image tokenizer's job)."""
    p = patches(img, patch)
    d = (p ** 2).sum(1, keepdims=True) - 2 * p @ codebook.T + (codebook ** 2).sum(1)
    return d.argmin(1).reshape(img.shape[0] // patch, img.shape[1] // patch)


def skimage_photos(names=("astronaut", "chelsea", "coffee", "rocket")) -> list[np.ndarray]:
    """Real RGB photos shipped with scikit-image, as float32 in [0, 1]."""
    from skimage import data
    return [np.asarray(getattr(data, n)(), np.float32) / 255 for n in names]
