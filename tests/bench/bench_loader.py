"""Benchmark: tokens/s from TokenDataset against a plain pyarrow loop on the same shards; export MB/s.

Run from the repository root: `python tests/bench/bench_loader.py [--tokens 60e6] [--dir /tmp/tm-bench]
[--batch 8] [--repeat 2]`. Each figure is the best of --repeat runs. Per window (a DataLoader
collates --batch windows) and batched (TokenDataset(batch_size=--batch), DataLoader(batch_size=None)),
in both batch layouts.
Data: real files (Python stdlib and site-packages sources, /usr/share/doc text) with their
bytes as token ids (EOS 256), in 16 Arrow shards: synthetic ids, real length distribution.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.loader.token_dataset import TokenDataset  # noqa: E402
from pipeline.sinks.megatron import export_megatron  # noqa: E402
from tests.loader.fixtures import EOS, STDLIB, write_dataset  # noqa: E402

log = logging.getLogger("bench_loader")
ROOTS = (STDLIB, Path("/usr/share/doc"), Path(sys.prefix) / "lib")


def real_docs(n_tokens: float) -> list[np.ndarray]:
    """Files' bytes as uint16 token ids with EOS, in sorted order, until n_tokens."""
    docs, total = [], 0
    for root in ROOTS:
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".txt", ".md", ".rst", ".h", ".c")):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if data:
                docs.append(np.append(np.frombuffer(data, np.uint8).astype(np.uint16), np.uint16(EOS)))
                total += len(docs[-1])
            if total >= n_tokens:
                return docs
    raise SystemExit(f"only {total} tokens of real files found")


def build(root: Path, n_tokens: float, n_shards: int = 16) -> Path:
    if (root / "dataset.json").exists():
        return root
    docs = real_docs(n_tokens)
    bounds = np.linspace(0, len(docs), n_shards + 1).astype(int)
    return write_dataset(root, [docs[a:b] for a, b in zip(bounds, bounds[1:])], batch_rows=4096)


def _shard_tokens(path: str) -> list[np.ndarray]:
    return [np.asarray(c.flatten()) for c in ipc.open_file(pa.memory_map(path)).read_all().column("tokens").chunks]


def plain_pyarrow(root: Path, seq_len: int) -> tuple[float, float]:
    """The ceiling: memory-map every shard and concatenate the tokens; then the same cut into int64 windows."""
    index = json.loads((root / "dataset.json").read_text())
    paths = [str(root / s["files"]["arrow"]["path"]) for s in index["shards"]]
    t0 = time.perf_counter()
    flat = np.concatenate([c for p in paths for c in _shard_tokens(p)])
    concat = len(flat) / (time.perf_counter() - t0)
    import torch
    t0, n = time.perf_counter(), 0
    for p in paths:
        tokens = np.concatenate(_shard_tokens(p)).astype(np.int64)
        k = (len(tokens) - 1) // seq_len
        inputs = torch.from_numpy(tokens[:k * seq_len]).view(k, seq_len)
        labels = torch.from_numpy(tokens[1:k * seq_len + 1]).view(k, seq_len)
        n += sum(x.numel() for x, _ in zip(inputs, labels))
    return concat, n / (time.perf_counter() - t0)


def token_dataset(root: Path, seq_len: int, num_workers: int | None, batch: int = 8,
                  layout: str | None = None) -> float:
    """Tokens/s of inputs delivered: direct iteration (None) or a DataLoader with num_workers;
    layout None is one window per item (the DataLoader collates `batch`), else TokenDataset batches."""
    from torch.utils.data import DataLoader
    batched = layout is not None
    ds = TokenDataset(str(root), seq_len, seed=0, shuffle=True, batch_size=batch if batched else None,
                      layout=layout or "windows")
    key = "tokens" if layout == "compact" else "input_ids"
    items = ds if num_workers is None else DataLoader(ds, batch_size=None if batched else batch,
                                                      num_workers=num_workers)
    t0, n = time.perf_counter(), 0
    for item in items:
        n += item[key].numel() - (item[key].shape[0] if layout == "compact" else 0)
    return n / (time.perf_counter() - t0)


class _Null:
    """The same windows as TokenDataset would give, precomputed: what the DataLoader alone costs."""

    def __init__(self, n_tokens: int, seq_len: int) -> None:
        self.n, self.seq_len = n_tokens // seq_len, seq_len

    def __iter__(self):
        import torch
        block = torch.zeros(1024, self.seq_len, dtype=torch.int64)
        for i in range(self.n):
            row = block[i % 1024]
            yield {"input_ids": row, "labels": row, "position_ids": row}


def dataloader_ceiling(n_tokens: int, seq_len: int, num_workers: int, batch: int = 8) -> float:
    """Tokens/s of a DataLoader over precomputed windows: the most any dataset can deliver through it."""
    from torch.utils.data import DataLoader, IterableDataset
    dataset = type("NullWindows", (_Null, IterableDataset), {})(n_tokens, seq_len)
    t0, n = time.perf_counter(), 0
    for b in DataLoader(dataset, batch_size=batch, num_workers=num_workers):
        n += b["input_ids"].numel()
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=float, default=60e6)
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "tokenmill-bench-loader"))
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8, help="windows per batch (64: the per-tensor cost shrinks)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure; the best is printed")
    parser.add_argument("--sharing-strategy", choices=("file_descriptor", "file_system"),
                        help="torch.multiprocessing sharing strategy for the DataLoader runs (default: torch's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.sharing_strategy:
        import torch.multiprocessing
        torch.multiprocessing.set_sharing_strategy(args.sharing_strategy)
        log.info("torch.multiprocessing sharing strategy: %s", args.sharing_strategy)
    root = build(Path(args.dir), args.tokens)
    total = json.loads((root / "dataset.json").read_text())["totals"]["n_tokens"]
    log.info("dataset: %s, %.1f M tokens, %d shards", root, total / 1e6, 16)
    plain_pyarrow(root, args.seq_len)  # warm the page cache
    concat, windows = (max(r) for r in zip(*(plain_pyarrow(root, args.seq_len) for _ in range(args.repeat))))
    log.info("plain pyarrow concat (ceiling):       %7.1f M tokens/s", concat / 1e6)
    log.info("plain pyarrow int64 windows:          %7.1f M tokens/s", windows / 1e6)
    for layout in (None, "windows", "compact"):
        log.info("-- %s", "one window per item, DataLoader(batch_size=%d)" % args.batch if layout is None else
                 "TokenDataset(batch_size=%d, layout=%r), DataLoader(batch_size=None)" % (args.batch, layout))
        for label, workers in (("in process", None), ("DataLoader 1 worker", 1), ("DataLoader 2 workers", 2)):
            if layout is None and workers == 2:  # refused: collated single windows leave the global order
                continue
            rate = max(token_dataset(root, args.seq_len, workers, args.batch, layout) for _ in range(args.repeat))
            log.info("TokenDataset %-22s  %7.1f M tokens/s, %5.1f per worker  (%.2f of concat, %.2f of int64 "
                     "windows)", label, rate / 1e6, rate / 1e6 / (workers or 1), rate / concat, rate / windows)
            if workers and layout is None:
                ceiling = dataloader_ceiling(int(total), args.seq_len, workers, args.batch)
                log.info("  same DataLoader over precomputed windows: %7.1f M tokens/s (%.2f of it)",
                         ceiling / 1e6, rate / ceiling)
    with tempfile.TemporaryDirectory() as out:
        stats = export_megatron(str(root), f"{out}/corpus")
    log.info("megatron export: %.1f MB/s (%d MB .bin in %.2f s)", stats["mb_per_s"], stats["bin_bytes"] / 1e6,
             stats["seconds"])


if __name__ == "__main__":
    main()
