"""Benchmark: tokens/s through each stage alone, and what it costs a tokenize + Arrow-build baseline.

Run from the repository root: `python tests/bench/bench_stages.py [--mb 16] [--merges 1024]`.
Text: real stdlib .py files, a byte-level BPE (8192) trained here, encoded by tiktoken from the
same merges (the pipeline's fast engine). Images/video: skimage photos through a numpy patch VQ.
Times are the least CPU seconds (time.process_time) of --repeat runs, single-threaded, so a
shared machine skews them less than wall time; compare ratios from one run.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.spec import DynamicSpec, PruneSpec, SpansSpec, TemporalSpec  # noqa: E402
from pipeline.stages import StageContext, build_stages  # noqa: E402
from tests.stages.helpers import STDLIB, patch_codebook, skimage_photos, train_bpe, vq_grid  # noqa: E402

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
    t0 = time.process_time()
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
    return table, time.process_time() - t0


def time_stage(spec, ctx: StageContext, table: pa.Table, repeat: int = 1) -> tuple[float, dict]:
    """Least CPU seconds of `repeat` runs of one stage on the whole table, and its stats.

    The stage first runs on a few rows: an actor pays one-time costs (lazy imports, pyarrow
    compute registry) once, not once per shard.
    """
    (stage,) = build_stages([spec], ctx)
    stage(table.slice(0, min(table.num_rows, 8)))
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        stage(table)
        times.append(time.process_time() - t0)
    return min(times), stage.stats


def report(label: str, n_tokens: int, n_bytes: int, t_base: float, t_stage: float, stats: dict) -> None:
    base_mbs, with_mbs = n_bytes / t_base / 1e6, n_bytes / (t_base + t_stage) / 1e6
    print(f"{label:34s} {n_tokens / t_stage / 1e6:7.2f} Mtok/s  stage {t_stage:6.2f}s  "
          f"pipeline {base_mbs:5.2f} -> {with_mbs:5.2f} MB/s  cost {1 - with_mbs / base_mbs:6.1%}  "
          f"reduction {stats.get('reduction', '-')}  vocab {stats.get('dynamic_vocab_size', '-')}")


def text_bench(mb: float, merges: int, vocab: int, repeat: int) -> None:
    files = stdlib_files(mb)
    bpe = train_bpe([p for p, _ in files[: max(1, len(files) // 4)]], vocab_size=vocab)
    enc = tiktoken_encoding(bpe)
    sample = [t for _, t in files[:20]]
    assert [enc.encode_ordinary(t) for t in sample] == [bpe.tokenizer.encode(t).ids for t in sample]
    baseline(enc, files[:8], bpe.eos_id)  # warm-up, as for the stages
    runs = [baseline(enc, files, bpe.eos_id) for _ in range(repeat)]
    table, t_base = runs[0][0], min(t for _, t in runs)
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
        slow = spec.kind == "spans" and spec.unit == "identifier"  # Python tokenize: one run is enough
        t_stage, stats = time_stage(spec, ctx, table, 1 if slow else repeat)
        report(label, n_tokens, n_bytes, t_base, t_stage, stats)


def grid_table(grids: list[np.ndarray], modality: str) -> pa.Table:
    """A shard table of token grids, built from flat numpy like the unit does."""
    flat = np.concatenate([g.reshape(-1) for g in grids]).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum([g.size for g in grids])]).astype(np.int32)
    return pa.table({"id": [f"g{i}" for i in range(len(grids))], "modality": [modality] * len(grids),
                     "tokens": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
                     "shape": pa.array([list(g.shape) for g in grids], pa.list_(pa.int32()))})


def visual_bench() -> None:
    """prune on real photos, temporal on a pan over a real photo; baseline = VQ + Arrow build."""
    photos = skimage_photos()
    codebook = patch_codebook(photos, 512)
    t0 = time.process_time()
    table = grid_table([vq_grid(im, codebook) for im in photos], "image")
    t_base = time.process_time() - t0
    n = len(pc.list_flatten(table.column("tokens")))
    print(f"image: {len(photos)} skimage photos, {n} tokens; VQ+Arrow baseline {t_base:.3f}s")
    t, stats = time_stage(PruneSpec(kind="prune", keep=0.25), StageContext("image", 512, codebook=codebook), table)
    report("prune keep=0.25", n, sum(im.size for im in photos), t_base, t, stats)  # bytes = RGB pixels
    frames = [_pan(photos[0], k) for k in range(32)]
    t0 = time.process_time()
    video = np.stack([vq_grid(f, codebook) for f in frames])
    vtable = grid_table([video], "video")
    t_base = time.process_time() - t0
    print(f"video: 32 frames panning over astronaut, {video.size} tokens; VQ+Arrow baseline {t_base:.3f}s")
    for thr in (0.0, 2.0):
        t, stats = time_stage(TemporalSpec(kind="temporal", threshold=thr),
                              StageContext("video", 512, codebook=codebook), vtable)
        report(f"temporal threshold={thr}", video.size, sum(f.size for f in frames), t_base, t, stats)


def _pan(img: np.ndarray, k: int) -> np.ndarray:
    """The lower half pans every 4th frame; the upper half stays still, as in real footage."""
    out = img.copy()
    half = img.shape[0] // 2
    out[half:] = np.roll(img[half:], 8 * (k // 4), axis=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=16.0, help="MB of stdlib code (one shard)")
    parser.add_argument("--merges", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the least CPU time counts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    text_bench(args.mb, args.merges, args.vocab, args.repeat)
    visual_bench()


if __name__ == "__main__":
    main()
