"""Bad input to the loader: missing, truncated or foreign shards and bad arguments, each refused clearly."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.loader.token_dataset import ShardError, ShardMissing, TokenDataset
from tests.loader.fixtures import pack_stream, shard_table, stdlib_docs, write_arrow, write_dataset


@pytest.fixture()
def docs() -> list[np.ndarray]:
    return stdlib_docs(12, max_len=200)


@pytest.fixture()
def root(tmp_path: Path, docs: list[np.ndarray]) -> Path:
    return write_dataset(tmp_path, [docs[:4], docs[4:8], docs[8:]])


def _shard(root: Path, i: int) -> tuple[str, Path]:
    entry = json.loads((root / "dataset.json").read_text())["shards"][i]
    return entry["name"], root / entry["files"]["arrow"]["path"]


def test_missing_shard_is_an_error_naming_it(root: Path) -> None:
    name, path = _shard(root, 1)
    path.unlink()
    with pytest.raises(ShardMissing, match=f"shard {name} .*file not found"):
        list(TokenDataset(str(root), 32, shuffle=False))


def test_missing_shard_is_skipped_with_a_warning_when_asked(root: Path, docs: list[np.ndarray],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    name, path = _shard(root, 1)
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="pipeline.loader"):
        ds = TokenDataset(str(root), 32, shuffle=False, on_missing="skip")
    assert any(name in r.getMessage() for r in caplog.records)
    expected = np.concatenate(docs[:4] + docs[8:]).astype(np.int64)
    np.testing.assert_array_equal(pack_stream(list(ds)), expected)


def test_truncated_shard_is_an_error_naming_it(root: Path) -> None:
    name, path = _shard(root, 2)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ShardError, match=f"shard {name} .*truncated"):
        list(TokenDataset(str(root), 32, shuffle=False))


def test_corrupt_shard_of_the_right_size_is_an_error(root: Path) -> None:
    name, path = _shard(root, 0)
    data = bytearray(path.read_bytes())
    data[-16:] = b"\x00" * 16  # the footer: where the schema and batches are found
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=f"shard {name} .*unreadable"):
        list(TokenDataset(str(root), 32, shuffle=False))


def _replace_shard(root: Path, i: int, docs: list[np.ndarray], **kw: object) -> None:
    """Rewrite shard i with other content, keeping the index's size right so only the check can fail."""
    name, path = _shard(root, i)
    data = write_arrow(path, shard_table(docs, **kw))
    index = json.loads((root / "dataset.json").read_text())
    index["shards"][i]["files"]["arrow"]["size"] = len(data)
    (root / "dataset.json").write_text(json.dumps(index))


def test_shard_with_another_tokenizer_fingerprint_is_refused(root: Path, docs: list[np.ndarray]) -> None:
    _replace_shard(root, 1, docs[4:8], metadata={b"tokenmill.tokenizer_fingerprint": b"f" * 64})
    with pytest.raises(ShardError, match="tokenizer fingerprint .* differs from the index"):
        list(TokenDataset(str(root), 32, shuffle=False))


def test_shard_with_another_token_type_is_refused(root: Path, docs: list[np.ndarray]) -> None:
    _replace_shard(root, 1, docs[4:8], dtype="uint32")
    with pytest.raises(ShardError, match=r"tokens column is list<item: uint32>.*index says list<uint16>"):
        list(TokenDataset(str(root), 32, shuffle=False))


def test_shard_with_other_rows_than_the_index_is_refused(root: Path, docs: list[np.ndarray]) -> None:
    _replace_shard(root, 1, docs[4:7])
    with pytest.raises(ShardError, match="3 rows, index says 4"):
        list(TokenDataset(str(root), 32, shuffle=False))


def test_index_path_leaving_the_dataset_folder_is_refused(root: Path) -> None:
    index = json.loads((root / "dataset.json").read_text())
    index["shards"][0]["files"]["arrow"]["path"] = "../../etc/passwd"
    (root / "dataset.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="is not .shards/part-.*the only name"):
        TokenDataset(str(root), 32)


def test_missing_index_names_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        TokenDataset(str(tmp_path), 32)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seq_len": 0}, "seq_len must be an integer >= 1"),
    ({"seq_len": -5}, "seq_len must be an integer >= 1"),
    ({"world_size": 0}, "world_size must be an integer >= 1"),
    ({"world_size": 2, "rank": 2}, r"rank must be in \[0, world_size=2\)"),
    ({"rank": -1}, "rank must be in"),
    ({"mode": "ragged"}, "mode must be one of"),
    ({"on_missing": "ignore"}, "on_missing must be 'error' or 'skip'"),
])
def test_bad_arguments_fail_at_build_time(root: Path, kwargs: dict, message: str) -> None:
    args = {"seq_len": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        TokenDataset(str(root), args.pop("seq_len"), **args)
