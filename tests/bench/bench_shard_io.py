"""`python tests/bench/bench_shard_io.py [--folder DIR] [--files 3000] [--repeat 5]`: two I/O paths of a worker, each
against the way it was done before, in one run.

- read: the files of a folder (default: the text bench's code folder, else this Python's standard library), read
  through `open_input`'s wrapper (before) and with `read_local` (now); microseconds a file.
- serialize: an Arrow IPC shard of a unit-sized table (real token ids: the folder's text through cl100k_base,
  the rank file `bpe-openai` ships, when it is installed, else random ids), written into a growing
  `BufferOutputStream` copied into bytes (before) and by `ipc_bytes` (now); the bytes must be identical.

Each pair alternates, and the median of the repeats is printed with the ratio. Results: docs/benchmarks.md
(text, Run 8).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def folder_files(folder: Path, n: int) -> list:
    from pipeline.plan import InputRef
    from pipeline.sources.inputs import local_version
    paths = sorted(p for p in folder.rglob("*.py") if p.is_file())[:n]
    refs = []
    for p in paths:
        st = os.stat(p)
        refs.append(InputRef(uri=str(p), size=st.st_size, version=local_version(st)))
    return refs


def read_wrapped(refs, source) -> int:
    from pipeline.sources.inputs import open_input, read_up_to
    total = 0
    for ref in refs:
        with open_input(ref, source, buffered=False) as f:
            total += len(read_up_to(f, ref.size + 1))
    return total


def read_direct(refs, source) -> int:
    from pipeline.sources.inputs import read_local
    return sum(len(read_local(ref, ref.size + 1)) for ref in refs)


def unit_table(refs, n_tokens: int):
    """A shard table as a unit builds it: one row per document, its token ids as a list column."""
    import numpy as np

    from pipeline.shard import build_table
    from pipeline.tokenizers import TokenBatch
    try:
        from pipeline.spec import TokenizerSpec
        from pipeline.tokenizers import build_tokenizer
        from tests.tokenizers.production import rank_file
        tokenizer = build_tokenizer(TokenizerSpec(kind="tiktoken", path=str(rank_file("cl100k_base"))))
        texts = [Path(r.uri).read_text(errors="replace") for r in refs]
        encoded = tokenizer.encode_batch(texts)
        ids = [encoded.values[a:b] for a, b in zip(encoded.offsets[:-1], encoded.offsets[1:])]
        what = f"cl100k_base ids of {len(texts)} real files, engine {tokenizer.engine}"
    except (ImportError, AssertionError):  # rank_file asserts that bpe-openai is installed
        rng = np.random.default_rng(0)
        ids = [rng.integers(0, 100_000, size, dtype=np.uint32) for size in rng.integers(100, 8000, 2000)]
        what = "random ids (bpe-openai is not installed)"
    while sum(map(len, ids)) < n_tokens:  # a unit's worth: repeat the documents
        ids = ids + ids
    lengths = np.array([len(a) for a in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    batch = TokenBatch(values=np.concatenate(ids), offsets=offsets)
    n = len(ids)
    rows = {"id": [f"doc{i}" for i in range(n)], "source": ["bench"] * n, "modality": ["code"] * n,
            "n_bytes": lengths.tolist(), "meta": [{}] * n}
    return build_table(rows, batch, "uint32", {}), what, int(offsets[-1])


def ipc_grown(table) -> bytes:
    """How ipc_bytes wrote a shard before: a growing stream, then a copy into bytes."""
    import pyarrow as pa

    from pipeline.sinks.arrow import _BATCH_ROWS
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path("/tmp/tokenmill-bench/code")
    parser.add_argument("--folder", type=Path,
                        default=default if default.is_dir() else Path(sysconfig.get_paths()["stdlib"]))
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--tokens", type=int, default=14_000_000, help="token ids in the shard table (a ~52 MB unit)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from pipeline.runner import keep_freed_memory
    from pipeline.sinks.arrow import ipc_bytes
    from pipeline.spec import SourceSpec
    keep_freed_memory()  # as a worker does
    refs = folder_files(args.folder, args.files)
    source = SourceSpec(uri=str(args.folder), format="files", modality="code")
    read_wrapped(refs, source)  # the page cache holds them for both
    before, now = [], []
    for _ in range(args.repeat):
        before.append(timed(read_wrapped, refs, source)[0])
        now.append(timed(read_direct, refs, source)[0])
    b, n = statistics.median(before) / len(refs) * 1e6, statistics.median(now) / len(refs) * 1e6
    mb = sum(r.size for r in refs) / 1e6
    print(f"read: {len(refs)} files, {mb:.1f} MB of {args.folder}: open_input {b:.1f} us a file, read_local {n:.1f} us "
          f"a file = {n / b:.2f}x")
    table, what, tokens = unit_table(refs, args.tokens)
    before, now = [], []
    for _ in range(args.repeat):
        t_old, old = timed(ipc_grown, table)
        t_new, new = timed(ipc_bytes, table)
        if bytes(new) != old:
            raise SystemExit("serialize: ipc_bytes differs from the stream's bytes")
        before.append(t_old)
        now.append(t_new)
        del old, new
    b, n = statistics.median(before) * 1e3, statistics.median(now) * 1e3
    print(f"serialize: {table.num_rows:,} rows, {tokens:,} tokens ({what}), {table.nbytes / 1e6:.1f} MB: growing "
          f"stream + bytes {b:.1f} ms, ipc_bytes {n:.1f} ms = {n / b:.2f}x; bytes identical")


if __name__ == "__main__":
    main()
