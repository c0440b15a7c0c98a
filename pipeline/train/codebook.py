"""Codebooks for `image-vq` and `audio-vq`: k-means over patches or log-mel frames of the corpus.

k-means++ seeding on a subsample, then Lloyd iterations in torch (GPU when present),
everything drawn from one explicit seed, so the same corpus, seed and device give the same
file. Centroids are rounded to integers (uint8 pixels, int16 dB) because encoding compares
integers exactly (pipeline/tokenizers/device.py); rounding moves a centroid by at most
half a grey level. Empty clusters restart at the point farthest from its centroid.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import numpy as np

from pipeline.train import iter_decoded
from pipeline.errors import SpecError
from pipeline.spec import SourceSpec
from pipeline.tokenizers.codebook import save_codebook

log = logging.getLogger(__name__)

MAX_VECTORS = 200_000
SEED_SAMPLE = 20_000
IMAGE_DEFAULTS = {"image_size": 256, "patch_size": 16}


def _kmeans_pp(points, k: int, rng: np.random.Generator):
    """k-means++ seeds (torch tensor [k, D]) drawn from `points` with `rng`."""
    import torch
    centers = [points[int(rng.integers(len(points)))]]
    best = ((points - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = (best / best.sum()).double().cpu().numpy()
        idx = int(rng.choice(len(points), p=probs / probs.sum())) if probs.sum() > 0 else int(rng.integers(len(points)))
        centers.append(points[idx])
        best = torch.minimum(best, ((points - points[idx]) ** 2).sum(1))
    return torch.stack(centers)


def _assign(points, centers):
    import torch
    dist = (centers * centers).sum(1)[None, :] - 2.0 * points @ centers.T
    idx = torch.argmin(dist, dim=1)
    return idx, ((points - centers[idx]) ** 2).sum(1)


def kmeans(vectors: np.ndarray, k: int, seed: int = 0, iterations: int = 20, device: str = "auto") -> np.ndarray:
    """float32 centroids [k, D] of integer vectors [N, D]; deterministic for a seed and device."""
    import torch
    from pipeline.tokenizers.device import pick_device
    rng = np.random.default_rng(seed)
    dev = pick_device(device)
    points = torch.as_tensor(vectors.astype(np.float32)).to(dev)
    sub = points[torch.as_tensor(np.sort(rng.permutation(len(points))[:SEED_SAMPLE])).to(dev)]
    centers = _kmeans_pp(sub, k, rng)
    for _ in range(iterations):
        idx, err = _assign(points, centers)
        sums = torch.zeros_like(centers).index_add_(0, idx, points)
        counts = torch.bincount(idx, minlength=k).to(points.dtype)
        new = sums / counts.clamp(min=1)[:, None]
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):
            far = torch.argsort(err, descending=True, stable=True)[:len(empty)]
            new[empty] = points[far]
        if torch.equal(new, centers):
            break
        centers = new
    return centers.cpu().numpy()


def _fit(vectors: np.ndarray, k: int, seed: int, lo: int, hi: int, dtype) -> tuple[np.ndarray, int]:
    if len(vectors) > MAX_VECTORS:
        vectors = vectors[np.sort(np.random.default_rng(seed).permutation(len(vectors))[:MAX_VECTORS])]
    distinct = len(np.unique(vectors, axis=0))
    if distinct < 2:
        raise SpecError("--input: fewer than 2 distinct training vectors; give more (or more varied) data")
    if k > distinct:
        log.warning("codebook size %d > %d distinct training vectors: using %d", k, distinct, distinct)
        k = distinct
    centers = kmeans(vectors, k, seed)
    return np.clip(np.rint(centers), lo, hi).astype(dtype), len(vectors)


def train_image_codebook(source: SourceSpec, k: int, output: str, max_bytes: int, seed: int = 0,
                         image_size: int = 256, patch_size: int = 16) -> dict[str, Any]:
    """Learn a patch codebook from the images of a corpus; writes OUTPUT (.safetensors) and its .json."""
    from pipeline.tokenizers.image import patchify
    corpus = iter_decoded(source, max_bytes, {"size": image_size, "patch": patch_size})
    vectors, n = _collect(corpus, lambda im: patchify(im, patch_size))
    codes, used = _fit(vectors, k, seed, 0, 255, np.uint8)
    config = {"modality": "image", "image_size": image_size, "patch_size": patch_size, "seed": seed,
              "trained_on": {"samples": n, "vectors": used}}
    return {"files": save_codebook(output, codes, config), "codebook_size": len(codes), "samples": n, "vectors": used,
            "skipped": corpus.skipped}


def train_audio_codebook(source: SourceSpec, k: int, output: str, max_bytes: int, seed: int = 0,
                         **mel: int) -> dict[str, Any]:
    """Learn a log-mel frame codebook from the audio of a corpus."""
    from pipeline.tokenizers.audio import DB_MAX, DB_MIN, MEL_DEFAULTS, log_mel_db
    cfg = {**MEL_DEFAULTS, **mel}
    corpus = iter_decoded(source, max_bytes, {"sample_rate": cfg["sample_rate"]})
    vectors, n = _collect(corpus, lambda clip: log_mel_db(clip.samples, cfg))
    codes, used = _fit(vectors, k, seed, DB_MIN, DB_MAX, np.int16)
    config = {"modality": "audio", **cfg, "seed": seed, "trained_on": {"samples": n, "vectors": used}}
    return {"files": save_codebook(output, codes, config), "codebook_size": len(codes), "samples": n, "vectors": used,
            "skipped": corpus.skipped}


def _collect(samples: Iterator[Any], to_vectors: Callable[[Any], np.ndarray]) -> tuple[np.ndarray, int]:
    parts = [to_vectors(s) for s in samples]
    if not parts:
        raise SpecError("--input: no decodable samples to learn a codebook from")
    return np.concatenate(parts), len(parts)
