"""`image-vq`: an image as a grid of patches, each the id of its nearest learned code.

The image is resized so its long side is `image_size` and both sides are multiples of
`patch_size` (aspect kept within half a patch), cut into patches of P x P x 3 pixels, and
each patch becomes the index of the nearest codebook vector (k-means centroids learned by
`tokenmill train --modality image`). Tokens are row-major with `shape` [rows, cols], then
EOS (id K) when add_eos. Decoding pastes each code's mean patch back: an approximate image.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.decoders.image import fit_array
from pipeline.tokenizers.base import TokenBatch, Tokenizer
from pipeline.tokenizers.codebook import Codebook, load_codebook


def patchify(pixels: np.ndarray, patch: int) -> np.ndarray:
    """[H, W, 3] uint8 (H, W multiples of patch) -> [rows * cols, patch * patch * 3], row-major."""
    rows, cols = pixels.shape[0] // patch, pixels.shape[1] // patch
    grid = pixels[:rows * patch, :cols * patch].reshape(rows, patch, cols, patch, -1)
    return grid.transpose(0, 2, 1, 3, 4).reshape(rows * cols, -1)


def unpatchify(patches: np.ndarray, rows: int, cols: int, patch: int) -> np.ndarray:
    """Inverse of patchify: [rows * cols, patch * patch * 3] -> [rows * patch, cols * patch, 3]."""
    grid = patches.reshape(rows, cols, patch, patch, -1).transpose(0, 2, 1, 3, 4)
    return grid.reshape(rows * patch, cols * patch, -1)


def with_eos(codes: list[np.ndarray], eos_id: int | None) -> TokenBatch:
    """Flat batch from per-sample code arrays, EOS appended to each when eos_id is not None."""
    tail = [] if eos_id is None else [eos_id]
    parts = [np.concatenate([c.astype(np.uint32), np.asarray(tail, np.uint32)]) for c in codes]
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    values = np.concatenate(parts) if parts else np.zeros(0, np.uint32)
    return TokenBatch(values.astype(np.uint32, copy=False), offsets)


class PatchQuantizer:
    """Images -> code grids with one codebook; shared by image-vq and video."""

    def __init__(self, book: Codebook, device: str = "auto") -> None:
        self.book = book
        self.size, self.patch = int(book.config["image_size"]), int(book.config["patch_size"])
        self.device = device
        self._search = None

    def search(self, patches: np.ndarray) -> np.ndarray:
        if self._search is None:  # built on first use, inside the actor that owns the device
            from pipeline.tokenizers.device import NearestCode
            self._search = NearestCode(self.book.vectors, 255, self.device)
        return self._search(patches)

    def grids(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, tuple[int, int]]]:
        """(codes, (rows, cols)) per image, all patches searched in one call."""
        fitted = [fit_array(np.asarray(im, np.uint8), self.size, self.patch) for im in images]
        dims = [(f.shape[0] // self.patch, f.shape[1] // self.patch) for f in fitted]
        codes = self.search(np.concatenate([patchify(f, self.patch) for f in fitted])) if fitted else []
        bounds = np.cumsum([0] + [r * c for r, c in dims])
        return [(codes[bounds[i]:bounds[i + 1]], dims[i]) for i in range(len(dims))]

    def render(self, codes: np.ndarray, rows: int, cols: int) -> np.ndarray:
        """The approximate image [rows * P, cols * P, 3] uint8 of a code grid (ids >= K drawn grey)."""
        vectors = np.full((len(codes), self.book.vectors.shape[1]), 128, np.uint8)
        valid = codes < len(self.book.vectors)
        vectors[valid] = self.book.vectors[codes[valid]]
        return unpatchify(vectors, rows, cols, self.patch)


class ImageVQ(Tokenizer):
    """The `image-vq` tokenizer."""

    kind = "image-vq"

    def __init__(self, path: str, add_eos: bool = True, device: str = "auto") -> None:
        self.quantizer = PatchQuantizer(load_codebook(path, "image"), device)
        self.add_eos = add_eos
        k = len(self.quantizer.book.vectors)
        self.eos_id = k if add_eos else None
        self.vocab_size = k + 1 if add_eos else k
        self.engine = "torch"

    def files(self):
        return self.quantizer.book.files

    def options(self) -> dict[str, Any]:
        return {"add_eos": self.add_eos}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": self.options()}

    def codebook(self) -> np.ndarray:
        return self.quantizer.book.vectors.astype(np.float32)

    def decode_hints(self) -> dict[str, Any]:
        """Decoder arguments that make decode threads deliver ready grids."""
        return {"size": self.quantizer.size, "patch": self.quantizer.patch}

    def encode_batch(self, samples: list[np.ndarray]) -> TokenBatch:
        grids = self.quantizer.grids(samples)
        batch = with_eos([codes for codes, _ in grids], self.eos_id)
        batch.shapes = [[rows, cols] for _, (rows, cols) in grids]
        return batch

    def decode(self, ids: np.ndarray, shape: list[int] | None = None) -> np.ndarray:
        """Approximate RGB image of a sample's tokens (EOS dropped); `shape` is [rows, cols]."""
        ids = np.asarray(ids, np.int64)
        ids = ids[ids != self.eos_id] if self.eos_id is not None else ids
        rows, cols = shape if shape else (1, len(ids))
        return self.quantizer.render(ids[:rows * cols], rows, cols)


def build_image_vq(spec) -> ImageVQ:
    return ImageVQ(spec.path, spec.add_eos, spec.options.device or "auto")
