"""Elastic resume: train k global batches on W1 ranks, save, resume on W2 ranks (other batch sizes and
DataLoader worker counts too); what all ranks read before and after is the epoch's global order,
each window once. In-process over many layouts (hypothesis), then with real processes (one per rank)
and real StatefulDataLoader workers on datasets made by `tokenmill run`."""
from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.loader.mixture import TokenMixture
from pipeline.loader.state import StateError
from pipeline.loader.token_dataset import TokenDataset
from tests.loader.fixtures import rows, same_windows, stdlib_docs, train_phase, write_dataset
from tests.tm_testing import REPO, copy_stdlib, run_cli

pytestmark = pytest.mark.usefixtures("fork_safe")  # DataLoader workers fork this process

SEQ = 48


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = stdlib_docs(40, max_len=900)
    return write_dataset(tmp_path_factory.mktemp("elastic"), [docs[:9], docs[9:14], docs[14:26], docs[26:33],
                                                              docs[33:]])


def _epochs(root: Path, **kw: Any) -> tuple[list, list]:
    ds = TokenDataset(str(root), SEQ, seed=5, shuffle_buffer=4, interleave=2, **kw)
    return list(ds), list(ds)


def _make(root: Path, world_size: int, batch_size: int, **kw: Any):
    return lambda rank: TokenDataset(str(root), SEQ, seed=5, shuffle_buffer=4, interleave=2, rank=rank,
                                     world_size=world_size, batch_size=batch_size, **kw)


@given(w1=st.integers(1, 4), w2=st.integers(1, 4), nw1=st.integers(0, 3), nw2=st.integers(0, 3),
       b1=st.integers(1, 3), b2=st.integers(1, 3), stop=st.floats(0, 1), saver=st.integers(0, 3),
       mode=st.sampled_from(["pack", "pad"]))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_state_resumes_on_any_layout_with_each_window_once(root: Path, w1: int, w2: int, nw1: int, nw2: int,
                                                             b1: int, b2: int, stop: float, saver: int,
                                                             mode: str) -> None:
    first, second = _epochs(root, mode=mode)
    g1, g2, n = w1 * b1, w2 * b2, len(first)
    k = round(stop * (n // g1))  # global batches before the stop, up to the epoch's last
    before, states = train_phase(_make(root, w1, b1, mode=mode), w1, nw1, k)
    after, _ = train_phase(_make(root, w2, b2, mode=mode), w2, nw2, None, start=states[saver % w1])
    same_windows(before, first[:k * g1])
    if n - k * g1 >= g2:  # the rest of the epoch, in whole global batches of the new size
        same_windows(after, first[k * g1:k * g1 + (n - k * g1) // g2 * g2])
    else:  # nothing left of it: the state starts the next epoch
        same_windows(after, second[:n // g2 * g2])


def test_a_state_from_another_dataset_seed_or_seq_len_is_refused_naming_the_field(root: Path,
                                                                                  tmp_path: Path) -> None:
    ds = TokenDataset(str(root), SEQ, seed=5, batch_size=2)
    next(iter(ds))
    state = ds.state_dict()
    other = write_dataset(tmp_path, [stdlib_docs(5, max_len=100)])
    cases = [(TokenDataset(str(other), SEQ, seed=5), "dataset: saved '[0-9a-f]{16}', now '[0-9a-f]{16}'"),
             (TokenDataset(str(root), SEQ, seed=6), "seed: saved 5, now 6"),
             (TokenDataset(str(root), 32, seed=5), "seq_len: saved 48, now 32")]
    for ds, field in cases:
        with pytest.raises(StateError, match=field):
            ds.load_state_dict(state)


@pytest.mark.parametrize("loop", ["from ds.epoch", "from the saved epoch"])
def test_a_state_past_the_end_starts_the_next_epoch(root: Path, loop: str, caplog: pytest.LogCaptureFixture) -> None:
    first, second = _epochs(root)
    ds = _make(root, 2, 3)(0)
    list(ds)  # a whole epoch on rank 0 of 2: its end is past the last whole global batch
    state = ds.state_dict()
    assert state["epoch"] == 0 and len(first) - state["position"] < 6
    resumed = _make(root, 2, 3)(1)
    with caplog.at_level(logging.INFO, logger="pipeline.loader"):
        resumed.load_state_dict(state)
        start = resumed.epoch if loop == "from ds.epoch" else state["epoch"]
        got = [w for epoch in range(start, 2) for w in _epoch_rows(resumed, epoch)]
    assert resumed.epoch == 2 and "end of epoch 0" in caplog.text
    assert loop == "from ds.epoch" or "nothing left of it" in caplog.text  # said, not an empty epoch in silence
    want = [w for step in range(len(second) // 6) for w in second[step * 6 + 3:step * 6 + 6]]  # rank 1's slices
    assert len(got) == len(want) > 50
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(got, want))


def _epoch_rows(ds: TokenDataset, epoch: int) -> list[dict[str, torch.Tensor]]:
    ds.set_epoch(epoch)
    return [w for item in ds for w in rows(item)]


# --- real processes, real DataLoader workers, real `tokenmill run` datasets ------------------------------
CHILD = """
import gc, itertools, json, os, sys, torch
from torchdata.stateful_dataloader import StatefulDataLoader
from pipeline.loader import TokenDataset, TokenMixture
cases, phase, rank, out = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
for case in cases:
    lay = case[phase]
    if rank >= lay["world_size"]:
        continue
    kw = dict(rank=rank, world_size=lay["world_size"], batch_size=lay["batch_size"], seed=3, shuffle_buffer=64)
    if case["kind"] == "mixture":
        ds = TokenMixture([(s, w) for s, w in case["sources"]], case["seq_len"], schedule=case["schedule"], **kw)
    else:
        ds = TokenDataset(case["sources"][0][0], case["seq_len"], **kw)
    loader = StatefulDataLoader(ds, batch_size=None, num_workers=lay["num_workers"])
    if phase == "after":  # a fresh loader; the state saved on another rank of another world size
        ds.load_state_dict(torch.load(f"{out}/{case['name']}-{rank % case['before']['world_size']}.state",
                                      weights_only=True))
    if case["kind"] == "mixture":
        batches = list(itertools.islice(iter(loader), lay["steps"]))
        epoch = None
    else:
        epoch = ds.epoch  # where the state says to continue
        ds.set_epoch(epoch)
        batches = list(itertools.islice(iter(loader), lay["steps"]))
    torch.save({"epoch": epoch, "inputs": [b["input_ids"] for b in batches]}, f"{out}/{case['name']}-{phase}-{rank}.pt")
    if phase == "before":
        torch.save(loader.state_dict(), f"{out}/{case['name']}-{rank}.state")
    del loader, batches
    gc.collect()  # its workers shut down now
os._exit(0)  # everything is saved and no worker is left: skip the interpreter's teardown (~1.5 s)
"""


def _layout(world_size: int, batch_size: int, num_workers: int, steps: int | None) -> dict[str, Any]:
    return {"world_size": world_size, "batch_size": batch_size, "num_workers": num_workers, "steps": steps}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, bpe_tokenizer: Path, ray_address: str) -> tuple[str, str]:
    """Two datasets written by `tokenmill run` (json and email sources of the standard library)."""
    base = tmp_path_factory.mktemp("made")
    outs = []
    for name in ("json", "email"):
        copy_stdlib(base / name, (name,))
        job = base / f"{name}.yaml"
        job.write_text(f"name: {name}\nsource: {{uri: {base / name}, format: files, modality: code, "
                       f"unit_bytes: 24KiB}}\ntokenizer: {{kind: hf, path: {bpe_tokenizer}}}\n"
                       f"sink: {{uri: {base / (name + '-out')}, formats: [arrow]}}\nreport: false\n")
        result = run_cli("run", str(job), address=ray_address)
        assert result.returncode == 0, result.stderr[-2000:]
        outs.append(str(base / (name + "-out")))
    return outs[0], outs[1]


def _run_phase(cases: list[dict[str, Any]], phase: str, out: Path) -> None:
    ranks = max(c[phase]["world_size"] for c in cases)
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cases), phase, str(r), str(out)], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for r in range(ranks)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]


def _by_position(out: Path, case: dict[str, Any], phase: str) -> tuple[dict[int, torch.Tensor], set]:
    lay, got, epochs = case[phase], {}, set()
    for rank in range(lay["world_size"]):
        saved = torch.load(out / f"{case['name']}-{phase}-{rank}.pt", weights_only=True)
        epochs.add(saved["epoch"])
        for step, batch in enumerate(saved["inputs"]):
            for j, row in enumerate(batch):
                got[step * lay["world_size"] * lay["batch_size"] + rank * lay["batch_size"] + j] = row
    return got, epochs


def _same(got: dict[int, torch.Tensor], want: list[torch.Tensor]) -> int:
    assert sorted(got) == list(range(len(want))), (len(got), len(want))
    assert all(torch.equal(got[i], w) for i, w in enumerate(want))
    return len(want)


def test_saved_on_w1_ranks_resumed_on_w2_in_real_processes(made: tuple[str, str], tmp_path: Path) -> None:
    a, b = made
    seq = 64
    ref_ds = TokenDataset(a, seq, seed=3, shuffle_buffer=64)
    first, second = [w["input_ids"] for w in ref_ds], [w["input_ids"] for w in ref_ds]
    n = len(first)
    assert n > 200 and len(ref_ds.index.shards) >= 3
    cases = [  # (name, before, after): W1 > W2 and W1 < W2, workers up and down, batch size changed, the end
        ("4to2", _layout(4, 2, 2, 3), _layout(2, 2, 0, None)),
        ("2to3", _layout(2, 3, 0, 4), _layout(3, 2, 2, None)),
        ("1to4", _layout(1, 4, 2, 5), _layout(4, 1, 3, None)),
        ("3to2-end", _layout(3, 2, 1, n // 6), _layout(2, 4, 2, None)),
    ]
    cases = [{"name": name, "kind": "dataset", "seq_len": seq, "sources": [[a, 1.0]], "before": x, "after": y}
             for name, x, y in cases]
    schedule = [[2, [1.0, 3.0]], [6, [2.0, 1.0]]]
    mixture = {"name": "mix-4to3", "kind": "mixture", "seq_len": seq, "sources": [[a, 2.0], [b, 1.0]],
               "schedule": schedule, "before": _layout(4, 2, 2, 4), "after": _layout(3, 2, 1, 5)}
    _run_phase(cases + [mixture], "before", tmp_path)
    _run_phase(cases + [mixture], "after", tmp_path)
    checked = 0
    for case in cases:
        g1, g2 = (case[p]["world_size"] * case[p]["batch_size"] for p in ("before", "after"))
        k = case["before"]["steps"]
        before, _ = _by_position(tmp_path, case, "before")
        after, epochs = _by_position(tmp_path, case, "after")
        checked += _same(before, first[:k * g1])
        if n - k * g1 >= g2:
            assert epochs == {0}
            checked += _same(after, first[k * g1:k * g1 + (n - k * g1) // g2 * g2])
        else:  # saved at the end of epoch 0: the resumed ranks read epoch 1
            assert epochs == {1}
            checked += _same(after, second[:n // g2 * g2])
    checked += _same_mixture(tmp_path, mixture)
    assert checked > 2 * n


def _same_mixture(out: Path, case: dict[str, Any]) -> int:
    """The mixture's windows before and after, over all ranks, against one process reading the same
    global batches (sizes 8 then 6: the curriculum's steps count global batches)."""
    def mix(batch_size: int) -> TokenMixture:
        return TokenMixture([(s, w) for s, w in case["sources"]], case["seq_len"], seed=3, shuffle_buffer=64,
                            batch_size=batch_size, schedule=case["schedule"])
    one = mix(8)
    head = [r for b in itertools.islice(iter(one), case["before"]["steps"]) for r in b["input_ids"]]
    rest = mix(6)
    rest.load_state_dict(one.state_dict())
    tail = [r for b in itertools.islice(iter(rest), case["after"]["steps"]) for r in b["input_ids"]]
    before, _ = _by_position(out, case, "before")
    after, _ = _by_position(out, case, "after")
    return _same(before, head) + _same(after, tail)


def test_epoch_steps_ends_each_epoch_after_that_many_global_batches(root: Path) -> None:
    """With follow, this is how new shards come in every N global batches: each epoch is N of them."""
    first, _ = _epochs(root)
    before, states = train_phase(_make(root, 2, 3, epoch_steps=5), 2, 2, None)
    same_windows(before, first[:5 * 6])  # the epoch stops after 5 global batches of 6
    assert states[0]["_snapshot"]["_worker_snapshots"]["worker_0"]["dataset_state"]["step"] == 5
    _, states = train_phase(_make(root, 2, 3, epoch_steps=5), 2, 1, 2)
    rest, _ = train_phase(_make(root, 1, 4, epoch_steps=5), 1, 0, None, start=states[0])
    same_windows(rest, first[12:12 + 3 * 4])  # the step count goes on across the resume: 3 more of 4
    ds = _make(root, 1, 4, epoch_steps=5)(0)
    ds.load_state_dict(states[0])
    assert len(list(ds)) == 3 and len(list(ds)) == 5 and ds.epoch == 2  # the next epoch: 5 again


def test_an_epoch_smaller_than_one_global_batch_is_an_error_not_an_empty_pass(root: Path) -> None:
    n = len(_epochs(root)[0])
    with pytest.raises(ValueError, match=f"has {n} windows, fewer than one global batch .* last_batch='pad'"):
        next(iter(_make(root, 4, n // 4 + 1)(0)))
    assert len(list(_make(root, 4, n // 4 + 1, last_batch="pad")(3))) == 1
