"""Megatron export: .bin/.idx read back by an independent reader written from Megatron-LM's layout."""
from __future__ import annotations

import argparse
import json
import struct
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import s3fs

from pipeline.cli import build_parser
from pipeline.sinks.megatron import cli_export, export_megatron
from tests.loader.fixtures import read_rows, s3_options, stdlib_docs, upload, write_dataset

__all__ = ["s3_options"]
# megatron/core/datasets/indexed_dataset.py: DType codes and the _INDEX_HEADER
MEGATRON_DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64,
                   7: np.float32, 8: np.uint16}


def read_megatron(idx: bytes, bin_: bytes) -> tuple[list[np.ndarray], np.ndarray]:
    """Parse .idx field by field (magic, <Q version, <B dtype, <Q counts, arrays) and cut .bin."""
    assert idx[:9] == b"MMIDIDX\x00\x00"
    version, = struct.unpack_from("<Q", idx, 9)
    code, = struct.unpack_from("<B", idx, 17)
    n_seq, n_doc = struct.unpack_from("<QQ", idx, 18)
    assert version == 1
    offset = 34
    lengths = np.frombuffer(idx, np.int32, n_seq, offset)
    pointers = np.frombuffer(idx, np.int64, n_seq, offset + 4 * n_seq)
    doc_idx = np.frombuffer(idx, np.int64, n_doc, offset + 12 * n_seq)
    assert offset + 12 * n_seq + 8 * n_doc == len(idx)  # nothing after the document indices
    dtype = np.dtype(MEGATRON_DTYPES[code])
    tokens = [np.frombuffer(bin_, dtype, int(n), int(p)) for n, p in zip(lengths, pointers)]
    assert int(pointers[-1]) + int(lengths[-1]) * dtype.itemsize == len(bin_)
    return tokens, doc_idx


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    docs = stdlib_docs(60, max_len=4000)
    return write_dataset(tmp_path / "ds", [docs[:20], docs[20:21], docs[21:50], docs[50:]], batch_rows=7)


def test_export_reads_back_as_the_shards_samples(root: Path, tmp_path: Path) -> None:
    stats = export_megatron(str(root), str(tmp_path / "out" / "corpus"))
    idx, bin_ = (tmp_path / "out" / "corpus.idx").read_bytes(), (tmp_path / "out" / "corpus.bin").read_bytes()
    tokens, doc_idx = read_megatron(idx, bin_)
    expected = [d for shard in read_rows(root) for d in shard]
    assert len(tokens) == len(expected) == stats["n_sequences"] == 60
    assert all(np.array_equal(t, e) for t, e in zip(tokens, expected))
    np.testing.assert_array_equal(doc_idx, np.arange(61))
    assert stats["dtype"] == "uint16" and stats["bin_bytes"] == len(bin_) and stats["idx_bytes"] == len(idx)
    assert not list((tmp_path / "out").glob("*.tmp-*"))


def test_uint32_tokens_export_as_int32(tmp_path: Path) -> None:
    docs = [d.astype(np.uint32) + 70_000 for d in stdlib_docs(5, max_len=300)]
    root = write_dataset(tmp_path / "ds", [docs], dtype="uint32")
    index = json.loads((root / "dataset.json").read_text())
    index["tokenizer"]["vocab_size"] = 100_000
    (root / "dataset.json").write_text(json.dumps(index))
    export_megatron(str(root), str(tmp_path / "c"))
    tokens, _ = read_megatron((tmp_path / "c.idx").read_bytes(), (tmp_path / "c.bin").read_bytes())
    assert tokens[0].dtype == np.int32
    assert all(np.array_equal(t, d.astype(np.int64)) for t, d in zip(tokens, docs))


def test_cli_hook_exports_and_reports_failures(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def parse(dest: str) -> argparse.Namespace:
        return build_parser().parse_args(["export", "megatron", str(root), str(tmp_path / dest)])
    assert cli_export(parse("cli")) == 0
    assert json.loads(capsys.readouterr().out)["n_sequences"] == 60
    next((root / "shards").glob("*.arrow")).unlink()
    assert cli_export(parse("broken")) == 1
    assert not (tmp_path / "broken.idx").exists() and not (tmp_path / "broken.bin").exists()
    assert not list(tmp_path.glob("broken*"))


def test_export_from_and_to_s3(root: Path, s3_options: dict[str, Any]) -> None:
    bucket = f"meg-{uuid.uuid4().hex[:8]}"
    upload(root, f"s3://{bucket}/ds", s3_options)
    stats = export_megatron(f"s3://{bucket}/ds", f"s3://{bucket}/megatron/corpus", storage_options=s3_options)
    fs = s3fs.S3FileSystem(**s3_options)
    tokens, _ = read_megatron(fs.cat_file(f"{bucket}/megatron/corpus.idx"), fs.cat_file(f"{bucket}/megatron/corpus.bin"))
    expected = [d for shard in read_rows(root) for d in shard]
    assert stats["n_tokens"] == sum(len(d) for d in expected) > 0
    assert all(np.array_equal(t, e) for t, e in zip(tokens, expected)) and len(tokens) == 60


def test_megatron_core_reads_the_export(root: Path, tmp_path: Path) -> None:
    """megatron-core's own IndexedDataset (PyPI megatron-core, CPU) opens the pair: every sequence, one document each."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    export_megatron(str(root), str(tmp_path / "corpus"))
    dataset = IndexedDataset(str(tmp_path / "corpus"))
    expected = [d for shard in read_rows(root) for d in shard]
    assert len(dataset) == len(expected) == 60
    assert all(np.array_equal(dataset[i], e) and dataset[i].dtype == np.uint16 for i, e in enumerate(expected))
    np.testing.assert_array_equal(dataset.document_indices, np.arange(61))
    np.testing.assert_array_equal(dataset.sequence_lengths, [len(e) for e in expected])
    wide = [d.astype(np.uint32) + 70_000 for d in stdlib_docs(5, max_len=300)]
    big = write_dataset(tmp_path / "wide", [wide], dtype="uint32")
    index = json.loads((big / "dataset.json").read_text())
    index["tokenizer"]["vocab_size"] = 100_000
    (big / "dataset.json").write_text(json.dumps(index))
    export_megatron(str(big), str(tmp_path / "wide-corpus"))
    dataset = IndexedDataset(str(tmp_path / "wide-corpus"))
    assert [dataset[i].tolist() for i in range(len(dataset))] == [d.tolist() for d in wide]
