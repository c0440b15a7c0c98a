"""Records and the reader: real records validate against the generated schemas; bad ones are one clear line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from pipeline.dataset import layout
from pipeline.dataset.read import DatasetError, DatasetFolder, IndexMissing, open_dataset
from pipeline.dataset.records import DatasetIndex, LedgerEntry, RecordError
from pipeline.job import index_header
from pipeline.ledger import Ledger, build_index, write_index
from pipeline.schemas import SCHEMA_DIR
from pipeline.storage import Storage
from pipeline.unit import output_dtype
from tests.dataset.helpers import Committed

OLD = Path(__file__).parent / "data" / "made-by-0ad3937"  # written by the release before pipeline.dataset


def _schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text())


def _index(c: Committed) -> Path:
    storage = Storage(str(c.out))
    from pipeline.tokenizers import build_tokenizer
    tok = build_tokenizer(c.spec.tokenizer)
    header = index_header(c.spec, tok, tok.engine, output_dtype(c.spec, tok))
    write_index(storage, build_index(Ledger(storage).entries(), c.units, header))
    return c.out / layout.INDEX


def test_real_records_validate_against_the_generated_schemas(committed: Committed) -> None:
    entries = sorted((committed.out / layout.LEDGER_DIR).glob("*.json"))
    assert entries
    for path in entries:
        jsonschema.validate(json.loads(path.read_text()), _schema("ledger.schema.json"))
    jsonschema.validate(json.loads(_index(committed).read_text()), _schema("dataset.schema.json"))


def test_records_round_trip_byte_for_byte(committed: Committed) -> None:
    path = sorted((committed.out / layout.LEDGER_DIR).glob("*.json"))[0]
    assert LedgerEntry.parse(path.read_bytes(), path.name).to_bytes() == path.read_bytes()
    index = _index(committed)
    assert DatasetIndex.parse(index.read_bytes(), "dataset.json").to_bytes() == index.read_bytes()


@pytest.mark.parametrize(("change", "message"), [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: "[]", "expected a JSON object"),
    (lambda text: text.replace('"tokenmill.dataset"', '"other"'), "not a tokenmill index"),
    (lambda text: text.replace('"version": 1', '"version": 7'), "this tokenmill reads version 1"),
    (lambda text: text.replace('"token_dtype": "uint16"', '"token_dtype": "float32"'), "token_dtype"),
    (lambda text: text.replace('"path": "shards/', '"path": "../shards/'), "the only name this shard's file"),
])
def test_bad_index_is_one_line_naming_the_file(committed: Committed, change, message: str) -> None:
    index = _index(committed)
    index.write_text(change(index.read_text()))
    with pytest.raises(DatasetError, match=message) as err:
        DatasetFolder(str(committed.out)).index()
    assert "\n" not in str(err.value) and str(index) in str(err.value)
    assert "run the job again" in str(err.value) or "reads version" in str(err.value)


def test_missing_index_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(IndexMissing, match="tokenmill run"):
        DatasetFolder(str(tmp_path)).index()
    assert DatasetFolder(str(tmp_path)).index_or_problem() == (None, None)


def test_record_error_is_raised_for_wrong_types() -> None:
    with pytest.raises(RecordError, match="n_samples"):
        LedgerEntry.parse({"unit": "u-" + "0" * 20, "n_samples": "x"}, "e.json")


def test_dataset_made_before_the_dataset_package_still_reads(tmp_path: Path) -> None:
    """A folder the previous release wrote (tests/dataset/data) opens in the reader, loader and lineage."""
    old = shutil.copytree(OLD, tmp_path / "old")
    ds = open_dataset(str(old))
    assert not ds.ledger_problems and len(ds.ledger) == ds.index.totals.n_shards == 2
    refs, missing = ds.shard_refs()
    assert not missing and [r.fmt for r in refs] == ["arrow", "arrow"]
    n_rows = sum(ds.folder.read_table(r, ["id"]).num_rows for r in refs)
    assert n_rows == ds.index.totals.n_samples > 0
    tar = ds.folder.shard_ref(ds.index.shards[0], ("webdataset",))
    assert ds.folder.read_table(tar, ["id", "tokens"]).num_rows == ds.index.shards[0].n_samples
    from pipeline.loader.index import load_index, open_shard
    loaded = load_index(str(old))
    assert sum(len(open_shard(loaded, r).docs(0, r.n_samples)) for r in loaded.shards) == n_rows
