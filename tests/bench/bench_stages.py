"""Benchmark: tokens/s through each stage alone, and what it costs a tokenize + Arrow-build baseline.

Run from the repository root: `python tests/bench/bench_stages.py [--mb 16] [--merges 1024]`.
Text: real stdlib .py files, a byte-level BPE (8192) trained here, encoded by tiktoken from the
same merges (the pipeline's fast engine). Images/video: skimage photos through a numpy patch VQ.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.spec import DynamicSpec, PruneSpec, SpansSpec, TemporalSpec  # noqa: E402
from pipeline.stages import StageContext, build_stages  # noqa: E402
from tests.stages.helpers import STDLIB, train_bpe  # noqa: E402

log = logging.getLogger("bench_stages")
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def stdlib_files(mb: float) -> list[tuple[Path, str]]:
    """Real Python files in sorted order until `mb` megabytes of text."""
    out, size = [], 0
    for path in sorted(STDLIB.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        out.append((path, text))
        size += len(text.encode())
        if size >= mb * 1e6:
            break
    return out


def tiktoken_encoding(bpe):
    """tiktoken Encoding from the trained BPE (ids follow merge order, so ranks = ids)."""
    import tiktoken
    ranks = {b: i for i, b in enumerate(bpe.token_bytes) if i != bpe.eos_id}
    return tiktoken.Encoding("bench", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": bpe.eos_id})


def baseline(enc, files, eos_id: int) -> tuple[pa.Table, float]:
    """Tokenize and build the shard table as the unit does (flat numpy + offsets)."""
    t0 = time.perf_counter()
    texts = [t for _, t in files]
    ids = enc.encode_ordinary_batch(texts, num_threads=1)
    lengths = np.array([len(x) + 1 for x in ids], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.fromiter((t for x in ids for t in (*x, eos_id)), np.uint16, int(offsets[-1]))
    names = [str(p) for p, _ in files]
    table = pa.table({"id": names, "source": names, "modality": ["code"] * len(files),
                      "tokens": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
                      "shape": pa.array([[int(n)] for n in lengths], pa.list_(pa.int32())),
                      "n_bytes": pa.array([len(t.encode()) for t in texts], pa.int64()),
                      "meta": ["{}"] * len(files), "_text": pa.array(texts, pa.large_string())})
    return table, time.perf_counter() - t0


def time_stage(spec, ctx: StageContext, table: pa.Table) -> tuple[float, dict]:
    """Seconds for one stage on the whole table, and its stats."""
    (stage,) = build_stages([spec], ctx)
    t0 = time.perf_counter()
    stage(table)
    return time.perf_counter() - t0, stage.stats


def report(label: str, n_tokens: int, n_bytes: int, t_base: float, t_stage: float, stats: dict) -> None:
    base_mbs, with_mbs = n_bytes / t_base / 1e6, n_bytes / (t_base + t_stage) / 1e6
    print(f"{label:34s} {n_tokens / t_stage / 1e6:7.2f} Mtok/s  stage {t_stage:6.2f}s  "
          f"pipeline {base_mbs:5.2f} -> {with_mbs:5.2f} MB/s  cost {1 - with_mbs / base_mbs:6.1%}  "
          f"reduction {stats.get('reduction', '-')}  vocab {stats.get('dynamic_vocab_size', '-')}")


def text_bench(mb: float, merges: int, vocab: int) -> None:
    files = stdlib_files(mb)
    bpe = train_bpe([p for p, _ in files[: max(1, len(files) // 4)]], vocab_size=vocab)
    enc = tiktoken_encoding(bpe)
    sample = [t for _, t in files[:20]]
    assert [enc.encode_ordinary(t) for t in sample] == [bpe.tokenizer.encode(t).ids for t in sample]
    table, t_base = baseline(enc, files, bpe.eos_id)
    n_tokens, n_bytes = sum(map(len, table.column("tokens").to_pylist())), sum(len(t.encode()) for _, t in files)
    print(f"text: {len(files)} stdlib files, {n_bytes / 1e6:.1f} MB, {n_tokens / 1e6:.2f} M tokens; "
          f"baseline tokenize+Arrow {t_base:.2f}s = {n_bytes / t_base / 1e6:.2f} MB/s, "
          f"{n_tokens / t_base / 1e6:.2f} Mtok/s (1 thread)")
    ctx = StageContext("code", bpe.vocab_size, bpe.eos_id, bpe.token_bytes)
    specs = {f"dynamic shard max_merges={merges}": DynamicSpec(kind="dynamic", max_merges=merges, scope="shard"),
             f"dynamic shard {merges} within_words": DynamicSpec(kind="dynamic", max_merges=merges, within_words=True),
             f"dynamic batch=256 max_merges={merges}": DynamicSpec(kind="dynamic", max_merges=merges, scope="batch"),
             "spans word": SpansSpec(kind="spans", unit="word"),
             "spans identifier": SpansSpec(kind="spans", unit="identifier")}
    for label, spec in specs.items():
        t_stage, stats = time_stage(spec, ctx, table)
        report(label, n_tokens, n_bytes, t_base, t_stage, stats)


def vq_tokens(images: list[np.ndarray], codebook: np.ndarray, patch: int = 8) -> list[np.ndarray]:
    """Nearest-code id of every patch (the image tokenizer's job, done here in numpy)."""
    out = []
    for img in images:
        h, w = (img.shape[0] // patch) * patch, (img.shape[1] // patch) * patch
        p = img[:h, :w].reshape(h // patch, patch, w // patch, patch, -1).swapaxes(1, 2).reshape(-1, patch * patch * img.shape[2])
        d = (p ** 2).sum(1, keepdims=True) - 2 * p @ codebook.T + (codebook ** 2).sum(1)
        out.append(d.argmin(1).reshape(h // patch, w // patch))
    return out


def grid_table(grids: list[np.ndarray], modality: str) -> pa.Table:
    flat = [g.reshape(-1) for g in grids]
    return pa.table({"id": [f"g{i}" for i in range(len(grids))], "modality": [modality] * len(grids),
                     "tokens": pa.array([f.tolist() for f in flat], pa.list_(pa.uint16())),
                     "shape": pa.array([list(g.shape) for g in grids], pa.list_(pa.int32()))})


def visual_bench() -> None:
    from skimage import data
    images = [np.asarray(getattr(data, n)(), np.float32) / 255 for n in ("astronaut", "chelsea", "coffee", "rocket")]
    rng = np.random.default_rng(0)
    sample = np.concatenate([vq_patches for vq_patches in (_patches(im) for im in images)])
    codebook = sample[rng.choice(len(sample), 512, replace=False)]
    t0 = time.perf_counter()
    grids = vq_tokens(images, codebook)
    table = grid_table(grids, "image")
    t_base = time.perf_counter() - t0
    n = sum(g.size for g in grids)
    t, stats = time_stage(PruneSpec(kind="prune", keep=0.25), StageContext("image", 512, codebook=codebook), table)
    print(f"image: {len(images)} skimage photos, {n} tokens; VQ+Arrow baseline {t_base:.2f}s")
    report("prune keep=0.25", n, n, t_base, t, stats)
    frames = [np.roll(images[0], 4 * k, axis=1) * 0 + _pan(images[0], k) for k in range(32)]
    video = np.stack(vq_tokens(frames, codebook))
    vtable = grid_table([video], "video")
    for thr in (0.0, 2.0):
        t, stats = time_stage(TemporalSpec(kind="temporal", threshold=thr),
                              StageContext("video", 512, codebook=codebook), vtable)
        report(f"temporal threshold={thr}", video.size, video.size, t_base, t, stats)


def _patches(img: np.ndarray, patch: int = 8) -> np.ndarray:
    h, w = (img.shape[0] // patch) * patch, (img.shape[1] // patch) * patch
    return img[:h, :w].reshape(h // patch, patch, w // patch, patch, -1).swapaxes(1, 2).reshape(-1, patch * patch * img.shape[2])


def _pan(img: np.ndarray, k: int) -> np.ndarray:
    """A camera pan over the lower half only: the upper half stays still, as in real footage."""
    out = img.copy()
    half = img.shape[0] // 2
    out[half:] = np.roll(img[half:], 8 * (k // 4), axis=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=16.0, help="MB of stdlib code (one shard)")
    parser.add_argument("--merges", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=8192)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    text_bench(args.mb, args.merges, args.vocab)
    visual_bench()


if __name__ == "__main__":
    main()
