"""Exact resume: take k batches, save, rebuild (in a new process), and the next batches match."""
from __future__ import annotations

import gc
import itertools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from pipeline.loader.token_dataset import StateError, TokenDataset
from tests.loader.fixtures import epoch_batches, make_loader, stdlib_docs, write_dataset

pytestmark = pytest.mark.usefixtures("fork_safe")  # DataLoader workers fork this process

REPO = Path(__file__).resolve().parents[2]
EPOCHS, NEXT = 2, 10
CHILD = """
import sys, torch, itertools
sys.path.insert(0, {repo!r})
from tests.loader.fixtures import make_loader, epoch_batches
for case in sys.argv[1:]:
    saved = torch.load(case + ".state", weights_only=True)
    ds, loader = make_loader({root!r}, saved["num_workers"])
    loader.load_state_dict(saved["loader"])
    batches = [b for _, b in itertools.islice(epoch_batches(ds, loader, saved["epoch"], {epochs}), {n})]
    torch.save(batches, case + ".next")
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = stdlib_docs(30, max_len=900)
    return write_dataset(tmp_path_factory.mktemp("resume"), [docs[:8], docs[8:11], docs[11:25], docs[25:]])


def _same(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> int:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    return len(a)


def _reference(root: Path, num_workers: int) -> tuple[list[dict[str, torch.Tensor]], int]:
    ds, loader = make_loader(str(root), num_workers)
    run = list(epoch_batches(ds, loader, 0, EPOCHS))
    return [b for _, b in run], sum(1 for e, _ in run if e == 0)


def test_resume_in_a_new_process_with_stateful_dataloader(root: Path, tmp_path: Path) -> None:
    cases, expected = [], {}
    for num_workers in (0, 2):
        ref, per_epoch = _reference(root, num_workers)
        assert per_epoch > 20 and len(ref) > 2 * per_epoch - 4
        for k in (1, 13, per_epoch, per_epoch + 5):  # mid-epoch, the exact end of epoch 0, in epoch 1
            ds, loader = make_loader(str(root), num_workers)
            taken = list(itertools.islice(epoch_batches(ds, loader, 0, EPOCHS), k))
            _same([b for _, b in taken], ref[:k])
            case = str(tmp_path / f"w{num_workers}-k{k}")
            torch.save({"loader": loader.state_dict(), "epoch": taken[-1][0], "num_workers": num_workers},
                       case + ".state")
            cases.append(case)
            expected[case] = ref[k:k + NEXT]
    script = CHILD.format(repo=str(REPO), root=str(root), epochs=EPOCHS, n=NEXT)
    subprocess.run([sys.executable, "-c", script, *cases], check=True, cwd=REPO, timeout=600)
    checked = sum(_same(torch.load(c + ".next", weights_only=True), expected[c]) for c in cases)
    assert checked == len(cases) * NEXT


def _epoch(ds: TokenDataset, epoch: int) -> TokenDataset:
    ds.set_epoch(epoch)
    return ds


@pytest.mark.parametrize("mode", ["pack", "pad"])
def test_plain_loop_resume_across_epochs(root: Path, mode: str) -> None:
    def run(ds: TokenDataset, start: int) -> list[np.ndarray]:
        out = []
        for epoch in range(start, 3):
            ds.set_epoch(epoch)
            out.extend(w["input_ids"].numpy() for w in ds)
        return out
    ref = run(TokenDataset(str(root), 48, seed=3, mode=mode, shuffle_buffer=8), 0)
    for k in (0, 1, 57, len(ref) // 3, len(ref) // 2, len(ref) - 1):
        ds = TokenDataset(str(root), 48, seed=3, mode=mode, shuffle_buffer=8)
        loop = (w for epoch in range(3) for w in _epoch(ds, epoch))
        head = [w["input_ids"].numpy() for w in itertools.islice(loop, k)]
        state = ds.state_dict()
        fresh = TokenDataset(str(root), 48, seed=3, mode=mode, shuffle_buffer=8)
        fresh.load_state_dict(state)
        rest = run(fresh, state["epoch"])
        assert len(head) + len(rest) == len(ref)
        assert all(np.array_equal(a, b) for a, b in zip(head + rest, ref))


def test_state_from_another_dataset_or_setup_is_refused(root: Path, tmp_path: Path) -> None:
    ds = TokenDataset(str(root), 48)
    next(iter(ds))
    state = ds.state_dict()
    other = write_dataset(tmp_path, [stdlib_docs(5, max_len=100)])
    with pytest.raises(StateError, match="another dataset"):
        TokenDataset(str(other), 48).load_state_dict(state)
    with pytest.raises(StateError, match="seq_len: saved 48, now 32"):
        TokenDataset(str(root), 32).load_state_dict(state)
    with pytest.raises(StateError, match="seed: saved 0, now 1"):
        TokenDataset(str(root), 48, seed=1).load_state_dict(state)
    with pytest.raises(StateError, match="shuffle_buffer: saved 4096, now 8"):
        TokenDataset(str(root), 48, shuffle_buffer=8).load_state_dict(state)
    with pytest.raises(StateError, match="version 0 is not supported"):
        TokenDataset(str(root), 48).load_state_dict({**state, "version": 0})
    with pytest.raises(StateError, match="version 1 is not supported: .* no global position .* start epoch 1"):
        TokenDataset(str(root), 48).load_state_dict({**state, "version": 1})
    with pytest.raises(StateError, match="not a tokenmill loader state"):
        TokenDataset(str(root), 48).load_state_dict({"epoch": 0})
    other_layout = TokenDataset(str(root), 48, world_size=2, rank=1, batch_size=3)
    other_layout.load_state_dict(state)  # a global position: any world size and batch size resume it
    assert other_layout.state_dict()["position"] == 1


def test_worker_restore_on_another_layout_is_refused_with_the_fix(root: Path) -> None:
    def loader(world_size: int) -> StatefulDataLoader:
        return StatefulDataLoader(TokenDataset(str(root), 48, world_size=world_size, batch_size=2),
                                  batch_size=None, num_workers=1)  # one: a failed worker shuts down at once
    first = loader(2)
    it = iter(first)
    next(it)
    state = first.state_dict()
    del it
    resumed = loader(1)
    resumed.load_state_dict(state)  # restores each worker's own state: needs the same layout
    try:
        next(iter(resumed))
    except StateError as exc:
        message = str(exc)
    del resumed, first
    gc.collect()  # shut the failed worker down here (~5 s in torch), not in a later test's fork_safe
    assert re.search("layout that saved it.*ds.load_state_dict", message, re.S)


def test_a_snapshot_every_n_steps_resumes_at_the_batch_after_the_last_one_taken(root: Path) -> None:
    def make(world_size: int, rank: int, batch_size: int) -> TokenDataset:
        return TokenDataset(str(root), 48, seed=2, rank=rank, world_size=world_size, batch_size=batch_size)
    single = list(TokenDataset(str(root), 48, seed=2))
    loader = StatefulDataLoader(make(2, 0, 3), batch_size=None, num_workers=2, snapshot_every_n_steps=4)
    it = iter(loader)
    list(itertools.islice(it, 6))  # snapshot at step 4, then 2 batches more
    state = loader.state_dict()
    del it, loader
    assert state["_steps_since_snapshot"] == 2
    resumed = make(1, 0, 5)
    resumed.load_state_dict(state)
    got = [row for b in itertools.islice(iter(resumed), 3) for row in b["input_ids"]]
    assert len(got) == 15 and all(torch.equal(a, b["input_ids"]) for a, b in zip(got, single[36:51]))


def test_a_state_saved_right_after_a_worker_restore_is_where_it_was(root: Path) -> None:
    def loader() -> StatefulDataLoader:
        return StatefulDataLoader(TokenDataset(str(root), 48, seed=2, batch_size=3), batch_size=None, num_workers=2)
    first = loader()
    it = iter(first)
    list(itertools.islice(it, 5))
    state = first.state_dict()
    del it, first
    again = loader()
    again.load_state_dict(state)  # each worker restores its own position (same layout)
    it = iter(again)
    resaved = again.state_dict()  # before any batch of the restored run
    del it, again
    single = list(TokenDataset(str(root), 48, seed=2))
    ds = TokenDataset(str(root), 48, seed=2, batch_size=3)
    ds.load_state_dict(resaved)
    assert ds.state_dict()["position"] == 15
    assert torch.equal(next(iter(ds))["input_ids"], torch.stack([w["input_ids"] for w in single[15:18]]))
