"""Batched TokenDataset: the same windows as one at a time, in both layouts, and an exact resume."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from pipeline.loader.token_dataset import TokenDataset, cu_seqlens, expand_compact
from pipeline.loader.mixture import TokenMixture
from tests.loader.fixtures import stdlib_docs, write_dataset

pytestmark = pytest.mark.usefixtures("fork_safe")  # DataLoader workers fork this process

SEQ = 64
KEYS = ("input_ids", "labels", "position_ids")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = stdlib_docs(40, max_len=700)
    return write_dataset(tmp_path_factory.mktemp("batch"), [docs[:12], docs[12:20], docs[20:33], docs[33:]],
                         batch_rows=5)


def _as_windows(ds: TokenDataset, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return expand_compact(batch, ds.pad_id) if ds.layout == "compact" else batch


def _rows(ds: TokenDataset, batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Batches concatenated back into one (n, SEQ) matrix per key."""
    expanded = [_as_windows(ds, b) for b in batches]
    return {k: torch.cat([b[k] for b in expanded]) for k in KEYS}


@pytest.mark.parametrize("layout", ["windows", "compact"])
@pytest.mark.parametrize("mode,shuffle", [("pack", True), ("pack", False), ("pad", True), ("pad", False)])
def test_batches_are_the_windows_concatenated(root: Path, layout: str, mode: str, shuffle: bool) -> None:
    """Whatever the worker count, the batches in step order are the single windows cut every 5."""
    args: dict[str, Any] = {"seed": 4, "shuffle": shuffle, "mode": mode, "shuffle_buffer": 8}
    single = list(TokenDataset(str(root), SEQ, **args))
    n_batches = len(single) // 5  # the last partial batch is dropped
    checked = 0
    for num_workers in (1, 2, 3):
        by_step = {}
        for worker in range(num_workers):
            ds = TokenDataset(str(root), SEQ, batch_size=5, layout=layout, **args)
            for i, batch in enumerate(ds.windows(worker, num_workers)):
                by_step[worker + i * num_workers] = batch
        assert sorted(by_step) == list(range(n_batches))
        rows = _rows(ds, [by_step[k] for k in range(n_batches)])
        for k in KEYS:
            assert torch.equal(rows[k], torch.stack([w[k] for w in single[:5 * n_batches]])), (k, num_workers)
        checked += 5 * n_batches
    assert checked > 300


@pytest.mark.parametrize("layout", ["windows", "compact"])
def test_last_partial_batch_is_dropped_or_padded(root: Path, layout: str) -> None:
    single = list(TokenDataset(str(root), SEQ, seed=4))
    assert len(single) % 7, "the test needs a partial last batch"
    dropped = list(TokenDataset(str(root), SEQ, seed=4, batch_size=7, layout=layout))
    kept = TokenDataset(str(root), SEQ, seed=4, batch_size=7, layout=layout, last_batch="pad")
    padded = list(kept)
    assert len(dropped) == len(single) // 7 and len(padded) == len(dropped) + 1
    rows = _rows(kept, padded)
    n = len(single)
    assert all(torch.equal(rows[k][:n], torch.stack([w[k] for w in single])) for k in KEYS)
    assert rows["input_ids"].shape[0] == 7 * len(padded) > n
    assert bool((rows["labels"][n:] == -100).all()) and bool((rows["input_ids"][n:] == kept.pad_id).all())


def test_compact_layout_is_int32_tokens_and_cu_seqlens(root: Path) -> None:
    ds = TokenDataset(str(root), SEQ, batch_size=8, layout="compact", mode="pad")
    plain = TokenDataset(str(root), SEQ, batch_size=8, mode="pad")
    n_padded = 0
    for batch, ref in zip(ds, plain):
        assert set(batch) == {"tokens", "cu_seqlens"}
        assert batch["tokens"].dtype == batch["cu_seqlens"].dtype == torch.int32
        assert batch["tokens"].shape == (len(ref["input_ids"]), SEQ + 1)
        assert torch.equal(batch["cu_seqlens"], cu_seqlens(ref["position_ids"]))
        assert torch.equal(batch["tokens"][:, 1:].long(), ref["labels"])
        n_padded += int((ref["labels"] == -100).any(dim=1).sum())
    assert n_padded > 10


@pytest.mark.parametrize("layout", ["windows", "compact"])
def test_batched_plain_loop_resumes_exactly_across_epochs(root: Path, layout: str) -> None:
    def make() -> TokenDataset:
        return TokenDataset(str(root), 48, seed=3, shuffle_buffer=8, batch_size=7, layout=layout)

    def loop(ds: TokenDataset, start: int) -> list[dict[str, torch.Tensor]]:
        return [b for epoch in range(start, 2) for b in _epoch(ds, epoch)]
    ref = loop(make(), 0)
    checked = 0
    for k in (1, 9, len(ref) // 2, len(ref) - 1):
        ds = make()
        head = list(itertools.islice((b for epoch in range(2) for b in _epoch(ds, epoch)), k))
        state = ds.state_dict()
        fresh = make()
        fresh.load_state_dict(state)
        rest = loop(fresh, state["epoch"])
        assert len(head) + len(rest) == len(ref)
        for got, want in zip(head + rest, ref):
            assert all(torch.equal(got[key], want[key]) for key in want)
            checked += 1
    assert checked > 4 * 20


def _epoch(ds: TokenDataset, epoch: int) -> TokenDataset:
    ds.set_epoch(epoch)
    return ds


def test_state_from_single_windows_resumes_in_batches(root: Path) -> None:
    single = list(TokenDataset(str(root), SEQ, seed=2))
    ds = TokenDataset(str(root), SEQ, seed=2)
    head = list(itertools.islice(iter(ds), 13))
    batched = TokenDataset(str(root), SEQ, seed=2, batch_size=6)
    batched.load_state_dict(ds.state_dict())
    rows = _rows(batched, list(batched))
    assert len(rows["input_ids"]) == 6 * ((len(single) - 13) // 6) > 100  # the partial last batch dropped
    assert torch.equal(rows["input_ids"], torch.stack([w["input_ids"] for w in single[13:13 + len(rows["input_ids"])]]))


@pytest.mark.parametrize("layout", ["windows", "compact"])
def test_batched_resume_with_two_workers(root: Path, layout: str) -> None:
    def loader() -> StatefulDataLoader:
        ds = TokenDataset(str(root), SEQ, seed=7, shuffle_buffer=16, batch_size=4, layout=layout)
        return StatefulDataLoader(ds, batch_size=None, num_workers=2)
    ref = list(loader())
    assert len(ref) > 20
    checked = 0
    for k in (1, 8, len(ref) // 2):
        first = loader()
        it = iter(first)
        head = list(itertools.islice(it, k))
        state = first.state_dict()
        del it
        resumed = loader()
        resumed.load_state_dict(state)
        rest = list(itertools.islice(iter(resumed), k))
        for got, want in zip(head + rest, ref[:2 * k]):
            assert got.keys() == want.keys() and all(torch.equal(got[key], want[key]) for key in want)
            checked += 1
    assert checked == 2 * (1 + 8 + len(ref) // 2)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_bad_batch_size_is_refused(root: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match="batch_size must be None .* or an integer >= 1"):
        TokenDataset(str(root), SEQ, batch_size=bad)


def test_bad_layout_is_refused(root: Path) -> None:
    with pytest.raises(ValueError, match="layout must be one of"):
        TokenDataset(str(root), SEQ, batch_size=4, layout="flat")
    with pytest.raises(ValueError, match="set batch_size too"):
        TokenDataset(str(root), SEQ, layout="compact")


def test_mixture_of_batched_sources_yields_batches_of_its_windows(root: Path) -> None:
    single = list(itertools.islice(iter(TokenMixture([(str(root), 1.0), (str(root), 2.0)], SEQ, seed=5)), 40))
    batched = TokenMixture([(str(root), 1.0), (str(root), 2.0)], SEQ, seed=5, batch_size=4, layout="compact")
    batches = list(itertools.islice(iter(batched), 10))
    rows = _rows(batched.datasets[0], batches)
    assert all(torch.equal(rows[k], torch.stack([w[k] for w in single])) for k in KEYS)
