"""TokenDataset: packing, document boundaries, pad mode, deterministic shuffle, zero-copy reads."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipeline.loader.token_dataset import IGNORE_INDEX, TokenDataset, cu_seqlens
from pipeline.loader.index import load_index, open_shard
from tests.loader.fixtures import EOS, pack_stream, stdlib_docs, write_dataset

SEQ = 64


@pytest.fixture(scope="module")
def docs() -> list[np.ndarray]:
    return stdlib_docs(40, max_len=700)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, docs: list[np.ndarray]) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"), [docs[:12], docs[12:20], docs[20:33], docs[33:]],
                         batch_rows=5)


def test_unshuffled_pack_is_the_documents_in_index_order(root: Path, docs: list[np.ndarray]) -> None:
    windows = list(TokenDataset(str(root), SEQ, shuffle=False))
    expected = np.concatenate(docs).astype(np.int64)
    assert all(w["input_ids"].shape == (SEQ,) and w["input_ids"].dtype == torch.int64 for w in windows)
    np.testing.assert_array_equal(pack_stream(windows), expected)
    # inside a shard consecutive windows share one token: the label of one is the first input of the next
    padded = [i for i, w in enumerate(windows) if int((w["labels"] == IGNORE_INDEX).sum()) > 0]
    assert len(padded) == 4 and padded[-1] == len(windows) - 1  # only each shard's last window is padded
    shared = [int(a["labels"][-1]) == int(b["input_ids"][0]) for i, (a, b) in enumerate(zip(windows, windows[1:]))
              if i not in padded]
    assert all(shared) and len(shared) == len(windows) - 4


def test_position_ids_restart_at_every_document(tmp_path: Path, docs: list[np.ndarray]) -> None:
    one_shard = write_dataset(tmp_path, [docs])
    windows = list(TokenDataset(str(one_shard), SEQ, shuffle=False, drop_last=True))
    inputs = torch.stack([w["input_ids"] for w in windows]).numpy().ravel()
    positions = torch.stack([w["position_ids"] for w in windows]).numpy()
    starts = set(np.cumsum([0] + [len(d) for d in docs])[:-1].tolist())
    checked = 0
    for i, row in enumerate(positions):
        for j, p in enumerate(row.tolist()):
            flat = i * SEQ + j
            want = 0 if (j == 0 or flat in starts) else positions[i, j - 1] + 1
            assert p == want, (i, j)
            checked += 1
    assert checked == len(inputs) > 1000
    doc_starts_seen = sum(int((row == 0).sum()) for row in positions)
    assert doc_starts_seen >= len(docs) - 1


def test_eos_inserted_between_documents_that_lack_it(tmp_path: Path) -> None:
    raw = [d[:-1] for d in stdlib_docs(6, max_len=90)]  # EOS stripped
    root = write_dataset(tmp_path, [raw])
    stream = pack_stream(list(TokenDataset(str(root), 32, shuffle=False)))
    expected = np.concatenate([np.append(d, EOS) for d in raw]).astype(np.int64)
    np.testing.assert_array_equal(stream, expected)


def test_pad_mode_keeps_one_document_per_window(root: Path, docs: list[np.ndarray]) -> None:
    seq = 256
    windows = list(TokenDataset(str(root), seq, shuffle=False, mode="pad"))
    rebuilt, current = [], []
    for w in windows:
        real = w["labels"].numpy() != IGNORE_INDEX
        if int(w["position_ids"][0]) == 0 and current and current[-1] == EOS:
            rebuilt.append(np.concatenate(current))
            current = []
        chunk = w["input_ids"].numpy()[real]
        current.append(chunk if not current else chunk[1:])
        current.append(w["labels"].numpy()[real][-1:])
    rebuilt.append(np.concatenate(current))
    assert len(rebuilt) == len(docs)
    for got, want in zip(rebuilt, docs):
        np.testing.assert_array_equal(got, want.astype(np.int64))
    pads = [w for w in windows if (w["labels"] == IGNORE_INDEX).any()]
    assert pads and all(int(w["input_ids"][-1]) == EOS for w in pads)


def test_shuffle_is_a_function_of_seed_and_epoch(root: Path) -> None:
    def first_inputs(seed: int, epoch: int) -> list[int]:
        ds = TokenDataset(str(root), SEQ, seed=seed, epoch=epoch, shuffle_buffer=8)
        return [int(w["input_ids"][0]) for w in ds][:40]
    a, b = first_inputs(1, 0), first_inputs(1, 0)
    assert a == b
    assert first_inputs(1, 1) != a and first_inputs(2, 0) != a
    unshuffled = [int(w["input_ids"][0]) for w in TokenDataset(str(root), SEQ, shuffle=False)][:40]
    assert a != unshuffled


def test_shuffled_epoch_has_the_same_tokens(root: Path, docs: list[np.ndarray]) -> None:
    windows = list(TokenDataset(str(root), SEQ, seed=3, shuffle_buffer=8))
    labels = Counter(x for w in windows for x in w["labels"].tolist() if x != IGNORE_INDEX)
    tokens = Counter(np.concatenate(docs).tolist())
    # every token is a label once, except the first token of each of the 4 shards' streams
    assert not labels - tokens and sum((tokens - labels).values()) == 4


def test_next_epoch_starts_by_itself_in_a_plain_loop(root: Path) -> None:
    ds = TokenDataset(str(root), SEQ, seed=5)
    first = [int(w["input_ids"][0]) for w in ds]
    second = [int(w["input_ids"][0]) for w in ds]
    assert ds.epoch == 2 and first != second
    assert second == [int(w["input_ids"][0]) for w in TokenDataset(str(root), SEQ, seed=5, epoch=1)]


def test_cu_seqlens_from_position_ids() -> None:
    pos = torch.tensor([[0, 1, 2, 0, 1], [0, 0, 1, 2, 3]])
    assert cu_seqlens(pos).tolist() == [0, 3, 5, 6, 10]
    assert cu_seqlens(pos).dtype == torch.int32


def test_local_arrow_is_memory_mapped_not_copied(tmp_path: Path) -> None:
    docs = stdlib_docs(200)
    root = write_dataset(tmp_path, [docs])
    index = load_index(str(root))
    before = pa.total_allocated_bytes()
    shard = open_shard(index, index.shards[0])
    views = shard.docs(0, 200)
    assert pa.total_allocated_bytes() - before < 64 * 1024  # the shard is several MB
    assert sum(len(v) for v in views) == sum(len(d) for d in docs) > 1_000_000
    assert all(not v.flags.owndata and not v.flags.writeable for v in views)


def test_package_import_does_not_import_torch_and_loader_not_ray() -> None:
    code = ("import sys, pipeline, pipeline.loader.index, pipeline.sinks.megatron; a = 'torch' in sys.modules; "
            "import pipeline.loader, pipeline.loader.mixture; print(a, 'torch' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["False", "True", "False"]
