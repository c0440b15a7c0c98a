"""`python tests/bench/gpu_check.py`: on a GPU machine, GPU codes == CPU codes, and images/s on each.

Trains a small image codebook on the skimage photos, tokenizes the same batch of images
with `image-vq` on cuda and on cpu, requires identical ids, and prints images/s for both
(nearest-code search only, decoded grids prepared once). Also checks `audio-vq`. Exits 0
with a message when no GPU is visible; exits 1 when codes differ. Runs in well under 3 minutes.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.decoders.audio import AudioClip, resample  # noqa: E402
from pipeline.decoders.image import fit_array  # noqa: E402
from pipeline.spec import TokenizerSpec  # noqa: E402
from pipeline.tokenizers import build_tokenizer  # noqa: E402
from tests import media_fixtures as mf  # noqa: E402

N_IMAGES = 512
CODES = 1024


def images_per_second(tok, images: list[np.ndarray], repeat: int = 3) -> tuple[float, np.ndarray]:
    import torch
    batch = tok.encode_batch(images[:8])  # warm-up: codebook to the device, kernels loaded
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        batch = tok.encode_batch(images)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return len(images) / best, batch.values


def main() -> int:
    import torch
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible to torch; nothing to compare (CPU-only machine). OK.")
        return 0
    print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        book = mf.image_codebook(Path(tmp) / "cb", k=CODES, image_size=256)
        photos = [fit_array(mf.photo(n), 256, 16) for n in mf.PHOTOS]
        rng = np.random.default_rng(0)
        images = [np.roll(photos[i % len(photos)], int(rng.integers(0, 64)), axis=1) for i in range(N_IMAGES)]
        gpu = build_tokenizer(TokenizerSpec(kind="image-vq", path=str(book), options={"device": "cuda"}))
        cpu = build_tokenizer(TokenizerSpec(kind="image-vq", path=str(book), options={"device": "cpu"}))
        gpu_rate, gpu_ids = images_per_second(gpu, images)
        cpu_rate, cpu_ids = images_per_second(cpu, images[:128], repeat=1)
        same = np.array_equal(gpu_ids[: len(cpu_ids)], cpu_ids)
        print(f"image-vq K={CODES}: GPU {gpu_rate:,.0f} images/s, CPU {cpu_rate:,.0f} images/s "
              f"({torch.get_num_threads()} threads); codes identical on {len(cpu_ids):,} ids: {same}")
        acb = mf.audio_codebook(Path(tmp) / "acb", k=256)
        samples, rate = mf.speech(mf.SENTENCES[1])
        clips = [AudioClip(resample(samples, rate, 16000), 16000)] * 32
        a_gpu = build_tokenizer(TokenizerSpec(kind="audio-vq", path=str(acb), options={"device": "cuda"}))
        a_cpu = build_tokenizer(TokenizerSpec(kind="audio-vq", path=str(acb), options={"device": "cpu"}))
        same_audio = np.array_equal(a_gpu.encode_batch(clips).values, a_cpu.encode_batch(clips).values)
        print(f"audio-vq K=256: codes identical on GPU and CPU: {same_audio}")
    if not (same and same_audio):
        print("gpu_check: FAILED, GPU and CPU codes differ")
        return 1
    print("gpu_check: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
