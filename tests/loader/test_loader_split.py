"""Every sample is read once per epoch, for any world_size and num_workers (property tests)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from pipeline.loader.token_dataset import IGNORE_INDEX, TokenDataset
from pipeline.loader.split import Stream, consumer_pieces, epoch_pieces
from tests.loader.fixtures import stdlib_docs, write_dataset

pytestmark = pytest.mark.usefixtures("fork_safe")  # DataLoader workers fork this process


@given(rows=st.lists(st.integers(0, 30), min_size=1, max_size=7), world_size=st.integers(1, 5),
       num_workers=st.integers(1, 4), seed=st.integers(0, 2**32 - 1), epoch=st.integers(0, 50),
       shuffle=st.booleans(), block=st.integers(1, 9))
@settings(max_examples=300, deadline=None)
def test_pieces_cover_every_row_once(rows: list[int], world_size: int, num_workers: int, seed: int,
                                     epoch: int, shuffle: bool, block: int) -> None:
    consumers = world_size * num_workers
    pieces = epoch_pieces(rows, consumers, seed, epoch, shuffle)
    seen: Counter[tuple[int, int]] = Counter()
    for c in range(consumers):
        stream = Stream(consumer_pieces(pieces, c, consumers), block, shuffle, (seed, epoch, c, consumers))
        for b in range(stream.n_blocks):
            parts = stream.block_rows(b)
            rows_b = [(p.shard, r) for p in parts for r in range(p.start, p.stop)]
            assert len(rows_b) == len(stream.block_order(b)) <= block
            seen.update(rows_b)
    assert seen == Counter((s, r) for s, n in enumerate(rows) for r in range(n))
    if len(rows) < consumers and sum(rows) >= consumers * max(rows):
        assert all(len(consumer_pieces(pieces, c, consumers)) > 0 for c in range(consumers))


def _documents(windows: list[dict[str, torch.Tensor]]) -> list[bytes]:
    """Pad mode with seq_len above every document: each window is one whole document."""
    out = []
    for w in windows:
        real = w["labels"].numpy() != IGNORE_INDEX
        tokens = np.append(w["input_ids"].numpy()[real][:1], w["labels"].numpy()[real])
        assert int(w["position_ids"][0]) == 0
        out.append(tokens.astype(np.uint16).tobytes())
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Counter[bytes]]:
    docs = stdlib_docs(23, max_len=120)
    root = write_dataset(tmp_path_factory.mktemp("split"), [docs[:9], docs[9:13], docs[13:]])
    return root, Counter(d.tobytes() for d in docs)


@given(world_size=st.integers(1, 4), num_workers=st.integers(1, 3), seed=st.integers(0, 1000),
       epoch=st.integers(0, 3), shuffle=st.booleans())
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_real_reads_cover_every_document_once(dataset: tuple[Path, Counter[bytes]], world_size: int,
                                              num_workers: int, seed: int, epoch: int, shuffle: bool) -> None:
    root, expected = dataset
    seen: Counter[bytes] = Counter()
    for rank in range(world_size):
        ds = TokenDataset(str(root), 200, rank=rank, world_size=world_size, seed=seed, shuffle=shuffle,
                          mode="pad", shuffle_buffer=4)
        for worker in range(num_workers):
            ds.set_epoch(epoch)  # each DataLoader worker has its own copy, at the same epoch
            seen.update(_documents(list(ds.windows(worker, num_workers))))
    assert sum(seen.values()) == 23
    assert seen == expected


def test_dataloader_workers_and_ranks_split_without_overlap(dataset: tuple[Path, Counter[bytes]]) -> None:
    root, expected = dataset
    seen: Counter[bytes] = Counter()
    for rank in range(2):
        ds = TokenDataset(str(root), 200, rank=rank, world_size=2, seed=11, mode="pad", shuffle_buffer=4)
        for batch in DataLoader(ds, batch_size=3, num_workers=2):
            windows = [{k: v[i] for k, v in batch.items()} for i in range(len(batch["input_ids"]))]
            seen.update(_documents(windows))
    assert seen == expected
