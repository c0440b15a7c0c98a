"""Export a tokenmill dataset to Megatron-LM's indexed dataset (`.bin` + `.idx`), streaming.

Megatron-LM (megatron/core/datasets/indexed_dataset.py) and NeMo read this pair:
`.bin` is every sequence's tokens back to back; `.idx` is the magic b"MMIDIDX\\x00\\x00",
version (<Q, 1), dtype code (<B), sequence count (<Q), document count (<Q), then int32
sequence lengths, int64 byte pointers into `.bin` and int64 document indices (0, then the
sequence count after each document). One tokenmill sample is one sequence and one document.
Shards are read one at a time and lengths spill to a temporary file, so memory does not
grow with the corpus; the `.idx` is written last, so a complete `.idx` means a complete pair.
"""
from __future__ import annotations

import argparse
import json
import logging
import struct
import sys
import tempfile
import time
from typing import IO, Any, Iterator

import numpy as np

from pipeline.loader.index import OpenIndex, load_index, open_shard
from pipeline.storage import atomic_file, filesystem

log = logging.getLogger(__name__)

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
               np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7,
               np.dtype(np.uint16): 8}
_CHUNK = 1 << 20  # lengths per read when assembling the .idx: 4 MiB of int32


def export_dtype(index: OpenIndex) -> np.dtype:
    """uint16 when the vocabulary fits (Megatron's own choice below 65,500 ids), else int32."""
    vocab = index.vocab_size if index.vocab_size is not None else (1 << 16 if index.token_dtype == "uint16" else 1 << 31)
    return np.dtype(np.uint16) if vocab <= (1 << 16) else np.dtype(np.int32)


def export_megatron(index_uri: str, dest_prefix: str, *, storage_options: dict[str, Any] | None = None,
                    dest_storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write DEST_PREFIX.bin and DEST_PREFIX.idx from a dataset; returns counts, sizes and MB/s."""
    started = time.perf_counter()
    index = load_index(index_uri, storage_options)
    dtype = export_dtype(index)
    fs, prefix = filesystem(dest_prefix, dest_storage_options if dest_storage_options is not None else storage_options)
    with tempfile.TemporaryFile() as lengths_file:
        with atomic_file(fs, f"{prefix}.bin") as bin_file:
            n_seq, n_tokens = _write_bin(index, dtype, bin_file, lengths_file)
        with atomic_file(fs, f"{prefix}.idx") as idx_file:
            _write_idx(idx_file, lengths_file, n_seq, dtype)
    seconds = time.perf_counter() - started
    bin_bytes = n_tokens * dtype.itemsize
    stats = {"bin": f"{dest_prefix}.bin", "idx": f"{dest_prefix}.idx", "dtype": dtype.name,
             "n_sequences": n_seq, "n_documents": n_seq, "n_tokens": n_tokens, "bin_bytes": bin_bytes,
             "idx_bytes": _idx_size(n_seq), "seconds": round(seconds, 3),
             "mb_per_s": round(bin_bytes / 1e6 / seconds, 1) if seconds > 0 else None}
    log.info("megatron export done", extra={"stats": stats})
    return stats


def _write_bin(index: OpenIndex, dtype: np.dtype, out: IO[bytes], lengths_file: IO[bytes]) -> tuple[int, int]:
    """Stream every shard's tokens (index order, dynamic ids expanded) to .bin; lengths aside."""
    n_seq = n_tokens = 0
    for tokens, lengths in _batches(index):
        if len(lengths) and int(lengths.max()) > np.iinfo(np.int32).max:
            raise ValueError("a sample is longer than 2**31 tokens: Megatron stores int32 lengths")
        out.write(np.ascontiguousarray(tokens, dtype=dtype).data)
        lengths_file.write(lengths.astype(np.int32).data)
        n_seq, n_tokens = n_seq + len(lengths), n_tokens + int(lengths.sum())
    total = sum(s.n_samples for s in index.shards)
    if n_seq != total:
        raise ValueError(f"read {n_seq} samples but the index lists {total}")
    return n_seq, n_tokens


def _batches(index: OpenIndex) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One shard open at a time; each record batch once."""
    for ref in index.shards:
        shard = open_shard(index, ref)
        yield from shard.batches(expand=True)
        log.debug("exported shard", extra={"shard": ref.name, "n_samples": ref.n_samples})


def _write_idx(out: IO[bytes], lengths_file: IO[bytes], n_seq: int, dtype: np.dtype) -> None:
    """Header, lengths, pointers, document indices: three passes over the spilled lengths."""
    out.write(MAGIC + struct.pack("<Q", VERSION) + struct.pack("<B", DTYPE_CODES[dtype]))
    out.write(struct.pack("<Q", n_seq) + struct.pack("<Q", n_seq + 1))
    for chunk in _read_lengths(lengths_file):
        out.write(chunk.data)
    pointer = 0
    for chunk in _read_lengths(lengths_file):
        ends = np.cumsum(chunk, dtype=np.int64) * dtype.itemsize
        out.write((pointer + ends - chunk.astype(np.int64) * dtype.itemsize).data)
        pointer += int(ends[-1])
    for start in range(0, n_seq + 1, _CHUNK):
        out.write(np.arange(start, min(start + _CHUNK, n_seq + 1), dtype=np.int64).data)


def _read_lengths(f: IO[bytes]) -> Iterator[np.ndarray]:
    f.seek(0)
    while chunk := f.read(_CHUNK * 4):
        yield np.frombuffer(chunk, dtype=np.int32)


def _idx_size(n_seq: int) -> int:
    return len(MAGIC) + 8 + 1 + 8 + 8 + n_seq * 4 + n_seq * 8 + (n_seq + 1) * 8


def cli_export(args: argparse.Namespace) -> int:
    """`tokenmill export megatron OUT DEST_PREFIX` (arguments in pipeline.cli): run the export; print the stats as JSON; exit status 1 with the reason when it cannot."""
    try:
        stats = export_megatron(args.out, args.dest_prefix, storage_options=args.storage_options)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        log.error("megatron export failed: %s", exc)
        return 1
    sys.stdout.write(json.dumps(stats) + "\n")
    return 0
