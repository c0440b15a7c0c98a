"""unit.py in a plain process (no Ray): one unit read -> tokenize -> write -> commit."""
from __future__ import annotations

import json
import tarfile

import pyarrow as pa

from pipeline.ledger import Ledger
from pipeline.plan import make_plan
from pipeline.spec import parse_spec
from pipeline.unit import UnitProcessor
from tests.tm_testing import copy_stdlib


def make_spec(tmp_path, **sink):
    return parse_spec({"name": "unit", "source": {"uri": str(tmp_path / "corpus"), "modality": "code"},
                       "tokenizer": {"kind": "bytes"},
                       "sink": {"uri": str(tmp_path / "out"), "formats": ["arrow", "webdataset"], **sink}})


def test_unit_commits_shards_then_ledger_and_keeps_sources(tmp_path):
    files = copy_stdlib(tmp_path / "corpus", ("json",))
    (tmp_path / "corpus" / "empty.py").write_bytes(b"")
    spec = make_spec(tmp_path, keep_source=True)
    units = make_plan(spec)
    processor = UnitProcessor(spec)
    entries = [processor(u) for u in units]
    assert sum(e.n_samples for e in entries) == len([f for f in files if f.stat().st_size])
    assert sum(e.n_errors for e in entries) == 1 + sum(f.stat().st_size == 0 for f in files)
    committed = Ledger(processor.storage).entries()
    assert set(committed) == {u.id for u in units}
    entry = entries[0]
    arrow = pa.ipc.open_file(tmp_path / "out" / entry.files["arrow"].path).read_all()
    assert not [c for c in arrow.column_names if c.startswith("_")]
    with tarfile.open(tmp_path / "out" / entry.files["webdataset"].path) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile(names[0]).read())
        original = tar.extractfile(names[2]).read()
    assert names[:3] == ["s00000000.json", "s00000000.tokens.npy", "s00000000.py"]
    assert original == open(meta["id"], "rb").read()


def test_same_unit_gives_the_same_bytes_anywhere(tmp_path):
    copy_stdlib(tmp_path / "corpus", ("json",))
    spec_a = make_spec(tmp_path)
    spec_b = spec_a.model_copy(update={"sink": spec_a.sink.model_copy(update={"uri": str(tmp_path / "elsewhere")})})
    unit = make_plan(spec_a)[0]
    a, b = UnitProcessor(spec_a)(unit), UnitProcessor(spec_b)(unit)
    assert a.files == b.files  # same paths, sizes and sha256: no location inside the shard
