"""One global order per epoch, whatever the world size, batch size and worker count (property tests)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from pipeline.loader.split import Order, rank_in_order
from pipeline.loader.token_dataset import IGNORE_INDEX, TokenDataset
from tests.loader.fixtures import stdlib_docs, write_dataset

pytestmark = pytest.mark.usefixtures("fork_safe")  # DataLoader workers fork this process


@given(counts=st.lists(st.integers(0, 40), min_size=1, max_size=8), seed=st.integers(0, 2**32 - 1),
       epoch=st.integers(0, 50), shuffle=st.booleans(), round_=st.integers(0, 9))
@settings(max_examples=200, deadline=None)
def test_merge_takes_each_lane_window_once_in_lane_order(counts: list[int], seed: int, epoch: int, shuffle: bool,
                                                         round_: int) -> None:
    lanes = Order(seed, epoch, shuffle).merge(counts, round_)
    index = rank_in_order(lanes, len(counts))
    assert Counter(lanes.tolist()) == Counter({i: n for i, n in enumerate(counts) if n})
    for lane, n in enumerate(counts):
        assert index[lanes == lane].tolist() == list(range(n))  # a lane's windows come in its own order
    assert shuffle or lanes.tolist() == sorted(lanes.tolist())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Counter[bytes]]:
    docs = stdlib_docs(23, max_len=120)
    root = write_dataset(tmp_path_factory.mktemp("split"), [docs[:9], docs[9:13], docs[13:], docs[:0]])
    return root, Counter(d.tobytes() for d in docs)


def _documents(windows: list[dict[str, torch.Tensor]]) -> list[bytes]:
    """Pad mode with seq_len above every document: each window is one whole document (or padding only)."""
    out = []
    for w in windows:
        real = w["labels"].numpy() != IGNORE_INDEX
        if real.any():
            tokens = np.append(w["input_ids"].numpy()[real][:1], w["labels"].numpy()[real])
            out.append(tokens.astype(np.uint16).tobytes())
    return out


def _rows(item: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    return [{k: v[i] for k, v in item.items()} for i in range(len(item["input_ids"]))]


def _by_position(root: Path, world_size: int, batch_size: int, num_workers: int,
                 **kw: object) -> dict[int, dict[str, torch.Tensor]]:
    """Every window each rank's each worker yields, keyed by its position in the global order."""
    got: dict[int, dict[str, torch.Tensor]] = {}
    for rank in range(world_size):
        for worker in range(num_workers):  # each DataLoader worker has its own copy of the dataset
            ds = TokenDataset(str(root), 200, rank=rank, world_size=world_size, batch_size=batch_size,
                              shuffle_buffer=4, **kw)
            for i, item in enumerate(ds.windows(worker, num_workers)):
                step = worker + i * num_workers
                for j, w in enumerate(_rows(item)):
                    key = step * world_size * batch_size + rank * batch_size + j
                    assert key not in got
                    got[key] = w
    return got


@given(world_size=st.integers(1, 4), batch_size=st.integers(1, 3), num_workers=st.integers(1, 3),
       seed=st.integers(0, 1000), epoch=st.integers(0, 3), shuffle=st.booleans(), interleave=st.integers(1, 5))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_layout_reads_the_same_global_order(dataset: tuple[Path, Counter[bytes]], world_size: int,
                                                  batch_size: int, num_workers: int, seed: int, epoch: int,
                                                  shuffle: bool, interleave: int) -> None:
    root, expected = dataset
    kw = {"seed": seed, "epoch": epoch, "shuffle": shuffle, "interleave": interleave, "mode": "pad"}
    order = [w for item in TokenDataset(str(root), 200, shuffle_buffer=4, batch_size=1, **kw) for w in _rows(item)]
    assert len(order) == 23
    got = _by_position(root, world_size, batch_size, num_workers, last_batch="pad", **kw)
    assert len(got) % (world_size * batch_size) == 0 and len(got) - len(order) < world_size * batch_size
    for i, w in enumerate(order):
        assert all(torch.equal(w[k], got[i][k]) for k in w), i
    assert Counter(_documents(list(got.values()))) == expected  # padded last batch: every document once
    dropped = _by_position(root, world_size, batch_size, num_workers, **kw)
    assert sorted(dropped) == list(range(len(order) // (world_size * batch_size) * world_size * batch_size))


def test_dataloader_workers_and_ranks_split_without_overlap(dataset: tuple[Path, Counter[bytes]]) -> None:
    root, expected = dataset
    seen: Counter[bytes] = Counter()
    for rank in range(2):
        ds = TokenDataset(str(root), 200, rank=rank, world_size=2, seed=11, mode="pad", shuffle_buffer=4,
                          batch_size=3, last_batch="pad")
        for batch in DataLoader(ds, batch_size=None, num_workers=2):
            seen.update(_documents(_rows(batch)))
    assert seen == expected


def test_single_windows_with_several_workers_are_refused(dataset: tuple[Path, Counter[bytes]]) -> None:
    ds = TokenDataset(str(dataset[0]), 200)  # what each of 2 DataLoader workers would run
    with pytest.raises(ValueError, match="give the dataset batch_size"):
        next(ds.windows(1, 2))
