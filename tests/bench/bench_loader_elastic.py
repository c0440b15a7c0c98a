"""Check (and time) elastic resume: the training loop of docs/loader.md saves on 4 ranks, resumes on 2 and 3.

Run from the repository root: `python tests/bench/bench_loader_elastic.py [OUT] [--save-on 4]
[--resume-on 2 3] [--steps 5] [--workers 2] [--batch 4] [--seq-len 256]`. OUT is a `tokenmill run`
output folder; without it a small dataset of real standard-library text (byte tokens) is written to a
temporary folder. Each rank is its own process (RANK and WORLD_SIZE in its environment, as torchrun
sets them) with a StatefulDataLoader of --workers workers. The first run stops after --steps global
batches and saves rank 0's loader state; each resume loads that state into a fresh loader on another
world size and reads to the end of the epoch. The windows all ranks read, before and after, are
compared with the epoch's global order read by one process: each exactly once, in order, the last
partial global batch (fewer windows than world_size x batch) dropped. Exit status 1 if not.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def rank_loop(out: str, ckpt: Path, seen: Path, seq_len: int, batch: int, workers: int, stop: int | None) -> None:
    """The loop of docs/loader.md (without a model); records every batch, saves the state after `stop` steps."""
    import torch
    from torchdata.stateful_dataloader import StatefulDataLoader

    from pipeline.loader import TokenDataset
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    ds = TokenDataset(out, seq_len=seq_len, rank=rank, world_size=world_size, seed=0, batch_size=batch)
    loader = StatefulDataLoader(ds, batch_size=None, num_workers=workers)
    if ckpt.exists():
        ds.load_state_dict(torch.load(ckpt, weights_only=True))  # saved on another world size
    got, epoch = [], ds.epoch
    ds.set_epoch(epoch)
    for step, b in enumerate(loader, 1):
        got.append(b["input_ids"])
        if step == stop:
            if rank == 0:
                torch.save(loader.state_dict(), ckpt)
            break
    torch.save({"epoch": epoch, "batches": got}, seen / f"w{world_size}-r{rank}.pt")


def launch(world_size: int, args: argparse.Namespace, ckpt: Path, seen: Path, stop: int | None) -> float:
    """One process per rank, as torchrun would start them; returns the wall time."""
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, args.out, "--rank-loop", "--ckpt", str(ckpt), "--seen", str(seen),
           "--seq-len", str(args.seq_len), "--batch", str(args.batch), "--workers", str(args.workers)]
    cmd += ["--stop", str(stop)] if stop else []
    procs = [subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "RANK": str(r), "WORLD_SIZE": str(world_size)})
             for r in range(world_size)]
    if any(p.wait() for p in procs):
        raise SystemExit(f"a rank of world size {world_size} failed")
    return time.perf_counter() - t0


def by_position(seen: Path, world_size: int, batch: int) -> tuple[dict, set]:
    import torch
    got, epochs = {}, set()
    for rank in range(world_size):
        saved = torch.load(seen / f"w{world_size}-r{rank}.pt", weights_only=True)
        epochs.add(saved["epoch"])
        for step, b in enumerate(saved["batches"]):
            for j, row in enumerate(b):
                got[step * world_size * batch + rank * batch + j] = row
    return got, epochs


def check(name: str, got: dict, want: list) -> bool:
    import torch
    ok = sorted(got) == list(range(len(want))) and all(torch.equal(got[i], w) for i, w in enumerate(want))
    print(f"{'OK ' if ok else 'BAD'} {name}: {len(got)} windows read, {len(want)} expected, each once in the "
          f"global order" if ok else f"BAD {name}: {len(got)} windows read, {len(want)} expected, or out of order")
    return ok


def demo_dataset() -> str:
    from tests.loader.fixtures import stdlib_docs, write_dataset
    docs = stdlib_docs(400, max_len=6000)
    root = Path(tempfile.mkdtemp(prefix="tokenmill-elastic-"))
    return str(write_dataset(root, [docs[i:i + 50] for i in range(0, 400, 50)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", help="a tokenmill output folder (default: a small demo dataset)")
    parser.add_argument("--save-on", type=int, default=4, help="world size that trains and saves")
    parser.add_argument("--resume-on", type=int, nargs="+", default=[2, 3], help="world sizes that resume")
    parser.add_argument("--steps", type=int, default=5, help="global batches before the save")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    parser.add_argument("--batch", type=int, default=4, help="windows per rank per step")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--rank-loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seen", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stop", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_loop:
        return rank_loop(args.out, args.ckpt, args.seen, args.seq_len, args.batch, args.workers, args.stop)
    args.out = args.out or demo_dataset()
    from pipeline.loader import TokenDataset
    ref = TokenDataset(args.out, seq_len=args.seq_len, seed=0)
    first, second = [w["input_ids"] for w in ref], [w["input_ids"] for w in ref]
    n, g1 = len(first), args.save_on * args.batch
    print(f"dataset {args.out}: {len(ref.index.shards)} shards, {n} windows of {args.seq_len} tokens per epoch")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for w2 in args.resume_on:
            ckpt, seen = Path(tmp) / f"loader-{w2}.pt", Path(tmp) / f"seen-{w2}"
            seen.mkdir()
            t_save = launch(args.save_on, args, ckpt, seen, args.steps)
            t_resume = launch(w2, args, ckpt, seen, None)
            before, _ = by_position(seen, args.save_on, args.batch)
            after, epochs = by_position(seen, w2, args.batch)
            k, g2 = args.steps * g1, w2 * args.batch
            rest = first[k:k + (n - k) // g2 * g2] if n - k >= g2 else second[:n // g2 * g2]
            ok &= check(f"{args.save_on} ranks, {args.steps} steps of {g1} windows", before, first[:k])
            ok &= check(f"resumed on {w2} ranks (global batch {g2}, epoch {sorted(epochs)})", after, rest)
            print(f"    wall: save run {t_save:.1f} s, resumed run {t_resume:.1f} s ({len(after) / t_resume:.0f} "
                  f"windows/s over {w2} ranks, process start included)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
