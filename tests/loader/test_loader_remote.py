"""TokenDataset over S3 (a real moto server on 127.0.0.1): same windows as local, resume, errors."""
from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest
import s3fs
import torch

from pipeline.loader.token_dataset import ShardMissing, TokenDataset
from tests.loader.fixtures import s3_options, stdlib_docs, upload, write_dataset

__all__ = ["s3_options"]


@pytest.fixture()
def remote(tmp_path: Path, s3_options: dict[str, Any]) -> tuple[Path, str]:
    docs = stdlib_docs(25, max_len=1500)
    root = write_dataset(tmp_path / "ds", [docs[:7], docs[7:9], docs[9:20], docs[20:]])
    uri = f"s3://loader-{uuid.uuid4().hex[:8]}/corpus/v1"
    upload(root, uri, s3_options)
    return root, uri


def _inputs(ds: TokenDataset) -> list[torch.Tensor]:
    return [w["input_ids"] for w in ds]


def test_remote_windows_equal_local_ones(remote: tuple[Path, str], s3_options: dict[str, Any]) -> None:
    root, uri = remote
    local = _inputs(TokenDataset(str(root), 64, seed=4, shuffle_buffer=8))
    far = TokenDataset(uri, 64, seed=4, shuffle_buffer=8, storage_options=s3_options, prefetch=2)
    assert not far.index.local
    got = _inputs(far)
    assert len(got) == len(local) > 100
    assert all(torch.equal(a, b) for a, b in zip(got, local))


def test_remote_resume_continues_exactly(remote: tuple[Path, str], s3_options: dict[str, Any]) -> None:
    _, uri = remote
    ref = _inputs(TokenDataset(uri, 64, seed=1, storage_options=s3_options))
    ds = TokenDataset(uri, 64, seed=1, storage_options=s3_options)
    head = [w["input_ids"] for w in itertools.islice(iter(ds), 77)]
    fresh = TokenDataset(uri, 64, seed=1, storage_options=s3_options)
    fresh.load_state_dict(ds.state_dict())
    rest = _inputs(fresh)
    assert len(head) + len(rest) == len(ref)
    assert all(torch.equal(a, b) for a, b in zip(head + rest, ref))


def test_remote_missing_shard_names_it(remote: tuple[Path, str], s3_options: dict[str, Any]) -> None:
    _, uri = remote
    ds = TokenDataset(uri, 64, shuffle=False, storage_options=s3_options)
    victim = ds.index.shards[2]
    s3fs.S3FileSystem(**s3_options).rm_file(victim.path)
    with pytest.raises(ShardMissing, match=victim.name):
        list(TokenDataset(uri, 64, shuffle=False, storage_options=s3_options))
    skipped = TokenDataset(uri, 64, shuffle=False, storage_options=s3_options, on_missing="skip")
    assert [s.name for s in skipped.index.shards] == [s.name for s in ds.index.shards if s is not victim]
    assert len(list(skipped)) > 0
