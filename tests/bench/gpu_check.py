"""`python tests/bench/gpu_check.py [--quick]`: correctness and throughput of the media tokenizers, GPU or CPU.

One command on a GPU node. Prints, for `image-vq` (K=1024) and the full-size VQGAN reference
(pipeline.tokenizers.encoder_reference, 256x256, bf16), the causal video reference (frames/s)
and the EnCodec-like audio reference (audio seconds per second): the decode rate alone, the
encode rate alone and end to end (decode threads overlapping the encode, as a worker runs
them), with the device's busy share (encode time / end-to-end time). Correctness: codes
at batch 8 against batch 1 (>= 99.9% equal for float encoders in fp32, the figure printed);
on a GPU also GPU codes against CPU codes (image-vq identical, VQGAN fp32 >= 99.9%). Then
the CPU batching cost: a small VQGAN at batch_size 8 against 1 on one thread; last, JPEG decoding in the
worker's threads against Ray tasks on every CPU (resources.decode_workers). With no GPU it
says so and runs everything on CPU with fewer samples (these are CPU numbers). Exits 1
when a correctness check fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.decoders import decoder_for  # noqa: E402
from pipeline.decoders.pool import bind_hints, decode_stream  # noqa: E402
from pipeline.sources import RawRecord  # noqa: E402
from pipeline.spec import SourceSpec, TokenizerSpec  # noqa: E402
from pipeline.tokenizers import build_tokenizer  # noqa: E402
from pipeline.tokenizers import encoder_reference as ref  # noqa: E402
from tests import media_fixtures as mf  # noqa: E402

FAILED: list[str] = []


def sync() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(name: str, unit: str, tok, records: list[RawRecord], modality: str, amount, batch: int) -> None:
    """Decode alone, encode alone, and end to end with decode threads overlapping the encode."""
    source = SourceSpec(uri="bench", modality=modality)
    decode = bind_hints(decoder_for(modality), tok)
    threads = max(2, os.cpu_count() or 2)
    tok.encode_batch([decode(records[0], source)])  # warm-up: kernels, lazy state
    start = time.perf_counter()
    payloads = [p for _, p in decode_stream(records, decode, source, threads)]
    t_decode = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(0, len(payloads), batch):
        tok.encode_batch(payloads[i:i + batch])
    sync()
    t_encode = time.perf_counter() - start
    start = time.perf_counter()
    pending: list = []
    for _, payload in decode_stream(records, decode, source, threads):
        pending.append(payload)
        if len(pending) == batch:
            tok.encode_batch(pending)
            pending = []
    if pending:
        tok.encode_batch(pending)
    sync()
    t_e2e = time.perf_counter() - start
    units = amount(payloads)
    bound = min(units / t_decode, units / t_encode)
    print(f"{name:28s} decode {units / t_decode:9.1f} {unit}/s | encode {units / t_encode:9.1f} {unit}/s | "
          f"end to end {units / t_e2e:9.1f} {unit}/s ({units / t_e2e / bound:.0%} of min(decode, encode)) | "
          f"busy {min(1.0, t_encode / t_e2e):.0%}")


def agreement(label: str, a: np.ndarray, b: np.ndarray, exact: bool = False) -> None:
    same = float(np.mean(a == b)) if len(a) == len(b) else 0.0
    ok = same == 1.0 if exact else same >= 0.999
    print(f"correctness: {label}: {same:.4%} of {len(a):,} codes equal ({'OK' if ok else 'FAILED'})")
    if not ok:
        FAILED.append(label)


def with_contract(model, root: Path, name: str, size: int = 256) -> Path:
    path = Path(ref.export(model, str(root / f"{name}.pt2"), size if name != "audio" else 64))
    (root / f"{name}.json").write_text(json.dumps(ref.contract(model, size)))
    return path


def images(root: Path, gpu: bool, n: int) -> None:
    records = mf.jpeg_records(n)
    book = mf.image_codebook(root / "cb", k=1024, image_size=256)
    vq = build_tokenizer(TokenizerSpec(kind="image-vq", path=str(book)))
    measure("image-vq K=1024 256x256", "images", vq, records, "image", len, 256)
    src = SourceSpec(uri="bench", modality="image")
    decoded = [bind_hints(decoder_for("image"), vq)(r, src) for r in records[:64]]
    agreement("image-vq batch 8 vs 1", vq.encode_batch(decoded).values,
              np.concatenate([vq.encode_batch([d]).values for d in decoded]), exact=True)
    if gpu:
        cpu_vq = build_tokenizer(TokenizerSpec(kind="image-vq", path=str(book), options={"device": "cpu"}))
        agreement("image-vq GPU vs CPU", vq.encode_batch(decoded).values, cpu_vq.encode_batch(decoded).values, True)
    path = with_contract(ref.vqgan(), root, "vqgan")
    bf16 = build_tokenizer(TokenizerSpec(kind="torch-export", path=str(path), precision="bf16"))
    print(f"VQGAN reference: full size (ch 128, mult 1,1,2,2,4, 16384x8 codebook), batch_size {bf16.batch_size}")
    measure("VQGAN reference bf16", "images", bf16, records if gpu else records[:8], "image", len,
            bf16.batch_size)
    fp32 = {b: build_tokenizer(TokenizerSpec(kind="torch-export", path=str(path), batch_size=b,
                                             options={"device": "cpu"} if b == "cpu" else {}))
            for b in (1, 8)}
    sample = decoded[:8]
    agreement("VQGAN fp32 batch 8 vs 1", fp32[8].encode_batch(sample).values, fp32[1].encode_batch(sample).values)
    if gpu:
        cpu = build_tokenizer(TokenizerSpec(kind="torch-export", path=str(path), options={"device": "cpu"}))
        agreement("VQGAN fp32 GPU vs CPU", fp32[8].encode_batch(sample).values, cpu.encode_batch(sample).values)


def audio(root: Path, gpu: bool) -> None:
    paths = mf.write_audio(root / "aud")[:3] * (16 if gpu else 1)
    path = with_contract(ref.audio_rvq(), root, "audio")
    tok = build_tokenizer(TokenizerSpec(kind="torch-export", path=str(path)))
    measure("audio RVQ reference 24 kHz", "audio-s", tok, mf.file_records(paths), "audio",
            lambda ps: sum(p.seconds for p in ps), tok.batch_size)


def video(root: Path, gpu: bool) -> None:
    clips = [mf.write_video(root / f"v{i}.mp4", "libx264", mf.pan_frames(64, 256, 256), fps=8)
             for i in range(8 if gpu else 1)]
    path = with_contract(ref.causal_video(), root, "video")
    tok = build_tokenizer(TokenizerSpec(kind="torch-export", path=str(path)))
    measure("causal video reference", "frames", tok, mf.file_records(clips), "video",
            lambda ps: sum(len(p.frames) for p in ps), tok.batch_size)


def cpu_batching(root: Path) -> None:
    """batch_size 8 against 1 for a small VQGAN on one CPU thread (the CPU default's evidence), with the
    allocator setting every worker makes (`keep_freed_memory`; without it a batch's activations, over glibc's
    mmap threshold, are faulted in afresh at every call: tests/bench/bench_cpu_batching.py). Last of the checks:
    the setting is process-wide."""
    import torch

    from pipeline.runner import keep_freed_memory
    keep_freed_memory()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = ref.vqgan(ch=32, mult=(1, 1, 2, 2, 4), blocks=1, codes=1024)
    path = with_contract(model, root, "small")
    payloads = [np.asarray(mf.photo(mf.PHOTOS[i % 6])) for i in range(16)]
    rates = {}
    for b in (1, 8):
        tok = build_tokenizer(TokenizerSpec(kind="torch-export", path=str(path), batch_size=b,
                                            options={"device": "cpu"}))
        tok.encode_batch(payloads[:b])  # warm-up: one full call
        start = time.perf_counter()
        tok.encode_batch(payloads)
        rates[b] = len(payloads) / (time.perf_counter() - start)
    torch.set_num_threads(threads)
    print(f"CPU batching (VQGAN ch 32, 256x256, 1 thread): batch 1 {rates[1]:.2f} images/s, batch 8 "
          f"{rates[8]:.2f} images/s: batch 8 costs {rates[1] / rates[8] - 1:+.0%} per image")


def decode_apart(n: int) -> None:
    """256 px JPEGs decoded to image-vq's grid: in the worker's threads (one per CPU) against Ray tasks on every
    CPU (resources.decode_workers: auto, pipeline.runner.decode_in_tasks), on a local Ray started here."""
    import ray

    from pipeline import runner
    cpus = os.cpu_count() or 2
    records = mf.jpeg_records(n)
    source = SourceSpec(uri="bench", modality="image")
    decode = partial(decoder_for("image"), size=256, patch=16)
    runner.connect(None, cpus)
    try:
        rates = {}
        for label, stream in (("threads", partial(decode_stream, threads=cpus)),
                              ("Ray tasks", partial(runner.decode_in_tasks, threads=0, tasks=cpus))):
            list(stream(records[:64], decode, source))  # warm-up: task workers start, imports
            start = time.perf_counter()
            decoded = sum(1 for _, p in stream(records, decode, source) if isinstance(p, np.ndarray))
            rates[label] = decoded / (time.perf_counter() - start)
        print(f"decode apart (256 px JPEG -> 256 grid, {n} images, {cpus} CPUs): {cpus} threads "
              f"{rates['threads']:,.0f} images/s | Ray tasks {rates['Ray tasks']:,.0f} images/s "
              f"({rates['Ray tasks'] / rates['threads']:.2f}x)")
    finally:
        runner.shutdown()
        assert not ray.is_initialized()


def main() -> int:
    import torch
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="images for image-vq (default 4096 GPU, 64 CPU)")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    if gpu:
        print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, {os.cpu_count()} CPUs")
    else:
        print(f"gpu_check: no CUDA GPU visible to torch: CPU fallback, these are CPU numbers "
              f"({os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__})")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images(root, gpu, args.images or (4096 if gpu else 64))
        audio(root, gpu)
        video(root, gpu)
        cpu_batching(root)
        decode_apart(args.images or (16384 if gpu else 512))
    print("gpu_check: FAILED: " + ", ".join(FAILED) if FAILED else "gpu_check: OK")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
