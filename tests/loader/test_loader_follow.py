"""follow=True: train while `tokenmill run` still commits shards. An epoch reads one generation
(the shards committed when it began, in commit order); new shards come in at the next epoch;
a shard replaced by the rerun is read from the generation that held it until that epoch ends."""
from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.loader.token_dataset import TokenDataset
from tests.loader.fixtures import rows, same_windows, train_phase
from tests.tm_testing import REPO, copy_stdlib, run_cli

pytestmark = pytest.mark.usefixtures("fork_safe")  # DataLoader workers fork this process

SEQ = 64


def _follower(out: Path, **kw: object) -> TokenDataset:
    return TokenDataset(str(out), SEQ, seed=3, shuffle_buffer=32, follow=True, settle_s=0, **kw)


def _job(tmp_path: Path, name: str, corpus: Path, out: Path, tok: Path) -> Path:
    job = tmp_path / "job.yaml"
    job.write_text(f"name: {name}\nsource: {{uri: {corpus}, format: files, modality: code, unit_bytes: 16KiB}}\n"
                   f"tokenizer: {{kind: hf, path: {tok}}}\nsink: {{uri: {out}, formats: [arrow]}}\n"
                   "report: false\n")
    return job


def _commit_order(out: Path) -> list[str]:
    """Shard names of the ledger in commit order, read with plain json (not the loader's reader)."""
    entries = [json.loads(p.read_text()) for p in sorted((out / "_ledger").glob("*.json"))]
    return [e["shard"] for e in sorted(entries, key=lambda e: (e["run"]["finished"], e["shard"]))]


def _windows(ds: TokenDataset, epoch: int) -> list[dict[str, torch.Tensor]]:
    ds.set_epoch(epoch)
    return [w for item in ds for w in rows(item)]


def test_follow_while_a_job_commits(tmp_path: Path, bpe_tokenizer: Path, ray_address: str,
                                    caplog: pytest.LogCaptureFixture) -> None:
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    copy_stdlib(corpus, ("json",))
    job = _job(tmp_path, "follow", corpus, out, bpe_tokenizer)
    assert run_cli("run", str(job), address=ray_address).returncode == 0
    trainer = _follower(out, batch_size=2)
    first = [s.name for s in trainer.index.shards]
    assert first == _commit_order(out) and len(first) >= 3  # generation 0: everything committed, in commit order
    reference = _windows(_follower(out, batch_size=1), 0)  # another trainer at the same generation
    late = TokenDataset(str(out), SEQ, seed=3, shuffle_buffer=32, follow=True, settle_s=3600, batch_size=1)
    assert late.generation.shards == 0  # it reads the ledger another way (nothing older than an hour) ...
    late.set_epoch(0, generation=trainer.latest_generation())  # ... but is given rank 0's generation
    same_windows({i: w for i, w in enumerate(_windows(late, 0))}, reference)

    # the nightly rerun: one input edited (its unit gets a new shard), a package added (new units)
    edited = corpus / "json" / "decoder.py"
    edited.write_text(edited.read_text() + "\n# edited by the nightly job\n")
    copy_stdlib(corpus, ("email",))
    rerun = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(job), "--address", ray_address],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    loader = DataLoader(trainer, batch_size=None, num_workers=2)
    trainer.set_epoch(0)
    epoch0 = iter(loader)
    head = list(itertools.islice(epoch0, 3))
    saved = _state_after(out, 3, batch_size=2)  # what a checkpoint of generation 0 holds
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    later = _commit_order(out)
    replaced = set(first) - set(later)
    assert len(replaced) == 1 and len(later) > len(first) + 3  # the edited unit's old shard is gone from disk too
    assert not any((out / "shards" / f"{name}.arrow").exists() for name in replaced)
    rest = list(epoch0)  # the epoch keeps its generation: the replaced shard was opened when its round began
    same_windows({i: w for i, w in enumerate(w for b in head + rest for w in rows(b))},
                 reference[:len(reference) // 2 * 2])

    trainer.set_epoch(1)  # the next epoch picks up what was committed since, in commit order
    assert [s.name for s in trainer.index.shards] == later
    assert trainer.generation.shards == len(later)
    same_windows({i: w for i, w in enumerate(w for b in loader for w in rows(b))},
                 _windows(_follower(out, batch_size=1), 1)[:len(_windows(_follower(out, batch_size=1), 1)) // 2 * 2])

    # a checkpoint of generation 0 cannot be rebuilt now (a shard of it was replaced): said, next epoch
    resumed = _follower(out, batch_size=2)
    with caplog.at_level(logging.WARNING, logger="pipeline.loader"):
        resumed.load_state_dict(saved)
    assert "cannot be rebuilt" in caplog.text and resumed.epoch == 1
    assert resumed.generation == trainer.generation

    # inside epoch 1, a state saved on 2 ranks resumes exactly on 3, and records the generation
    epoch1 = _windows(_follower(out, batch_size=1), 1)
    before, states = train_phase(lambda r: _follower(out, rank=r, world_size=2, batch_size=2, epoch=1), 2, 2, 5)
    assert states[1]["_snapshot"]["_worker_snapshots"]["worker_0"]["dataset_state"]["generation"] == \
        trainer.generation.to_json()
    after, _ = train_phase(lambda r: _follower(out, rank=r, world_size=3, batch_size=2, epoch=1), 3, 0, None,
                           start=states[1])
    same_windows(before, epoch1[:20])
    same_windows(after, epoch1[20:20 + (len(epoch1) - 20) // 6 * 6])


def _state_after(out: Path, steps: int, batch_size: int) -> dict:
    """The state of a trainer of generation 0 after `steps` global batches (taken before the rerun commits)."""
    ds = _follower(out, batch_size=batch_size)
    list(itertools.islice(iter(ds), steps))
    return ds.state_dict()


def test_follow_a_first_run_before_it_ends(tmp_path: Path, bpe_tokenizer: Path, ray_address: str) -> None:
    """A first run writes a provisional dataset.json (its header, no shard yet, complete: false) before its
    units, so a follower can start while it runs. Here the driver dies right after the units commit (as by
    SIGKILL, chosen by TOKENMILL_TEST_CRASH_AT): the follower still reads every committed shard, in commit
    order, and the rerun completes the index."""
    from pipeline.job import CRASH_ENV
    corpus, out = tmp_path / "corpus", tmp_path / "out"
    copy_stdlib(corpus, ("json",))
    job = _job(tmp_path, "first", corpus, out, bpe_tokenizer)
    died = run_cli("run", str(job), address=ray_address, env={CRASH_ENV: "units-committed"})
    assert died.returncode == 137, died.stderr[-2000:]
    index = json.loads((out / "dataset.json").read_text())
    assert index["shards"] == [] and index["complete"] is False and index["tokenizer"]["vocab_size"] > 0
    committed = _commit_order(out)
    assert len(committed) >= 3
    follower = _follower(out, batch_size=1)
    assert [s.name for s in follower.index.shards] == committed
    assert sum(1 for _ in _windows(follower, 0)) > 0
    assert run_cli("run", str(job), address=ray_address).returncode == 0
    final = json.loads((out / "dataset.json").read_text())
    assert final["complete"] is True and sorted(s["name"] for s in final["shards"]) == sorted(committed)
