"""`python tests/bench/bench_media.py [--images N] [--codes K]`: media decode and tokenize speed on CPU.

Prints images/s (decode and tokenize measured apart), audio seconds/s, video frames/s, for
one worker (1 thread) and for 2 workers (2 processes), and each modality's share of time
in decode vs tokenize. Inputs are real: skimage photos as 512x512 JPEGs, espeak-ng speech,
H.264 video panning over a photo. A benchmark, not a test: it asserts nothing about time.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.sources import RawRecord  # noqa: E402
from pipeline.spec import SourceSpec, TokenizerSpec  # noqa: E402
from tests import media_fixtures as mf  # noqa: E402

SOURCE = SourceSpec(uri="bench", modality="image")


def records(paths: list[Path]) -> list[RawRecord]:
    return [RawRecord(str(p), str(p), p.read_bytes(), p.stat().st_size) for p in paths]


def make_inputs(root: Path, n_images: int, codes: int) -> dict:
    from PIL import Image
    (root / "jpg").mkdir(parents=True)
    names = [n for n in mf.PHOTOS]
    images = []
    for i in range(n_images):
        pixels = Image.fromarray(mf.photo(names[i % len(names)])).resize((512, 512))
        path = root / "jpg" / f"{i:04d}.jpg"
        pixels.rotate(i % 7).save(path, quality=90)
        images.append(path)
    book = mf.image_codebook(root / "cb", k=codes, image_size=256)
    audio = mf.write_audio(root / "aud")[:3] * 4
    acb = mf.audio_codebook(root / "acb", k=codes)
    video = [mf.write_video(root / f"v{i}.mp4", "libx264", mf.pan_frames(120, 256, 192)) for i in range(3)]
    return {"images": images, "codebook": book, "audio": audio, "audio_codebook": acb, "video": video}


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def bench_one(kind: str, inputs: dict) -> dict:
    """Decode then tokenize all inputs of a kind in this process; seconds of each and units done."""
    import torch
    torch.set_num_threads(1)
    from pipeline.decoders.pool import bind_hints
    from pipeline.decoders import decoder_for
    from pipeline.tokenizers import build_tokenizer
    spec = {"image": TokenizerSpec(kind="image-vq", path=str(inputs["codebook"])),
            "audio": TokenizerSpec(kind="audio-vq", path=str(inputs["audio_codebook"])),
            "mulaw": TokenizerSpec(kind="audio-mulaw", sample_rate=16000),
            "video": TokenizerSpec(kind="video", path=str(inputs["codebook"]), fps=5)}[kind]
    tok = build_tokenizer(spec)
    modality = "audio" if kind == "mulaw" else kind
    decode = bind_hints(decoder_for(modality), tok)
    recs = records(inputs["audio" if kind == "mulaw" else kind if kind != "image" else "images"])
    tok.encode_batch([decode(recs[0], SOURCE)])  # warm-up: torch import, codebook to device
    payloads, t_dec = timed(lambda: [decode(r, SOURCE) for r in recs])
    _, t_tok = timed(lambda: [tok.encode_batch(payloads[i:i + 32]) for i in range(0, len(payloads), 32)])
    if kind == "image":
        units = len(payloads)
    elif kind == "video":
        units = sum(len(p.frames) for p in payloads)
    else:
        units = sum(p.seconds for p in payloads)
    return {"decode_s": t_dec, "tokenize_s": t_tok, "units": units}


def _worker(args):
    kind, inputs = args
    return bench_one(kind, inputs)


def report(kind: str, unit: str, inputs: dict) -> None:
    one = bench_one(kind, inputs)
    total = one["decode_s"] + one["tokenize_s"]
    with mp.get_context("spawn").Pool(2) as pool:
        start = time.perf_counter()
        both = pool.map(_worker, [(kind, inputs)] * 2)
        wall = time.perf_counter() - start
    units2 = sum(b["units"] for b in both)
    steady = units2 / max(max(b["decode_s"] + b["tokenize_s"] for b in both), 1e-9)
    print(f"{kind:6s} 1 worker: decode {one['units'] / one['decode_s']:8.1f} {unit}/s, tokenize "
          f"{one['units'] / one['tokenize_s']:8.1f} {unit}/s, end to end {one['units'] / total:8.1f} {unit}/s, "
          f"decode share {one['decode_s'] / total:4.0%} | 2 workers: {steady:8.1f} {unit}/s "
          f"(incl. process start {units2 / wall:.1f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--codes", type=int, default=512, help="codebook size (K)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp), args.images, args.codes)
        print(f"CPU, {os.cpu_count()} cores, torch threads 1 per worker, K={args.codes}, 512x512 JPEG -> 16x16 grid")
        report("image", "images", inputs)
        report("audio", "audio-s", inputs)
        report("mulaw", "audio-s", inputs)
        report("video", "frames", inputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
