"""unit.py in a plain process (no Ray): one unit read -> tokenize -> write -> commit."""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.ledger import Ledger
from pipeline.plan import make_plan
from pipeline.spec import parse_spec
from pipeline.unit import UnitProcessor
from tests import media_fixtures as mf
from tests.tm_testing import copy_stdlib


def make_spec(tmp_path, **sink):
    return parse_spec({"name": "unit", "source": {"uri": str(tmp_path / "corpus"), "modality": "code"},
                       "tokenizer": {"kind": "bytes"},
                       "sink": {"uri": str(tmp_path / "out"), "formats": ["arrow", "webdataset"], **sink}})


def test_empty_files_are_skipped_apart_from_bad_input_even_with_on_error_fail(tmp_path):
    files = copy_stdlib(tmp_path / "corpus", ("json",))
    (tmp_path / "corpus" / "empty.py").write_bytes(b"")
    spec = parse_spec({**make_spec(tmp_path).model_dump(mode="json", exclude_unset=True), "on_error": "fail"})
    entries = [UnitProcessor(spec)(u) for u in make_plan(spec)]  # on_error: fail does not fail on an empty file
    n_empty = 1 + sum(f.stat().st_size == 0 for f in files)
    assert sum(e.n_empty for e in entries) == n_empty and sum(e.n_errors for e in entries) == 0
    listed = pa.concat_tables([pq.read_table(p) for p in (tmp_path / "out" / "_errors").glob("*.parquet")])
    assert set(listed.column("stage").to_pylist()) == {"empty"} and listed.num_rows == n_empty


def test_the_ledger_says_where_a_units_time_went(tmp_path):
    from pipeline.unit import PHASES
    copy_stdlib(tmp_path / "corpus", ("json",))
    spec = make_spec(tmp_path)
    entries = [UnitProcessor(spec)(u) for u in make_plan(spec)]
    for entry in entries:
        phases = entry.run.phases
        assert set(phases) == set(PHASES) and all(v >= 0 for v in phases.values())
        assert phases["encode"] > 0 and phases["write"] > 0  # hash: what was left of it after the write, maybe 0
        assert sum(phases.values()) <= entry.run.seconds + 1e-3  # the rest is the commit
        for shard in entry.files.values():  # hashed on another thread, beside the write: of the bytes written
            written = (tmp_path / "out" / shard.path).read_bytes()
            assert (shard.size, shard.sha256) == (len(written), hashlib.sha256(written).hexdigest())


def test_unit_commits_shards_then_ledger_and_keeps_sources(tmp_path):
    files = copy_stdlib(tmp_path / "corpus", ("json",))
    (tmp_path / "corpus" / "empty.py").write_bytes(b"")
    spec = make_spec(tmp_path, keep_source=True)
    units = make_plan(spec)
    processor = UnitProcessor(spec)
    entries = [processor(u) for u in units]
    assert sum(e.n_samples for e in entries) == len([f for f in files if f.stat().st_size])
    assert sum(e.n_errors for e in entries) == 0  # no bad input: the empty files are counted apart
    assert sum(e.n_empty for e in entries) == 1 + sum(f.stat().st_size == 0 for f in files)
    committed = Ledger(processor.storage).entries()
    assert set(committed) == {u.id for u in units}
    entry = entries[0]
    arrow = pa.ipc.open_file(tmp_path / "out" / entry.files["arrow"].path).read_all()
    assert not [c for c in arrow.column_names if c.startswith("_")]
    with tarfile.open(tmp_path / "out" / entry.files["webdataset"].path) as tar:
        names = tar.getnames()
        shard_meta = json.loads(tar.extractfile(names[0]).read())
        meta = json.loads(tar.extractfile(names[1]).read())
        original = tar.extractfile(names[3]).read()
    key = f"{entry.shard.removeprefix('part-')}-s00000000"  # unique across the dataset (energon requires it)
    assert names[:4] == ["__meta__", f"{key}.json", f"{key}.tokens.npy", f"{key}.py"]
    assert shard_meta == {k.decode(): v.decode() for k, v in arrow.schema.metadata.items()}
    assert original == (tmp_path / "corpus" / meta["id"]).read_bytes()  # ids are names below the source root


def test_same_unit_gives_the_same_bytes_anywhere(tmp_path):
    copy_stdlib(tmp_path / "corpus", ("json",))
    spec_a = make_spec(tmp_path)
    spec_b = spec_a.model_copy(update={"sink": spec_a.sink.model_copy(update={"uri": str(tmp_path / "elsewhere")})})
    unit = make_plan(spec_a)[0]
    a, b = UnitProcessor(spec_a)(unit), UnitProcessor(spec_b)(unit)
    assert a.files == b.files  # same paths, sizes and sha256: no location inside the shard


def bad_errors(out) -> list[dict]:
    return [row for f in sorted((out / "_errors").glob("*.parquet")) for row in pq.read_table(f).to_pylist()]


def test_bad_records_cost_only_themselves(tmp_path):
    """NaN audio (an assertion at shard build before), a cut FLAC, and an input that grew after
    planning: each is quarantined with its reason and stage; the unit commits the rest."""
    speech = mf.write_audio(tmp_path / "corpus")
    mf.write_nan_wav(tmp_path / "corpus" / "nan.wav")
    mf.write_cut_flac(tmp_path / "corpus" / "cut.flac", speech[1])
    spec = parse_spec({"name": "unit", "source": {"uri": str(tmp_path / "corpus"), "modality": "audio"},
                       "tokenizer": {"kind": "audio-mulaw", "sample_rate": 8000}, "sink": {"uri": str(tmp_path / "out")}})
    units = make_plan(spec)
    with open(speech[0], "ab") as f:
        f.write(b"\0" * 64)  # grew after planning: never silently cut or read
    entries = [UnitProcessor(spec)(u) for u in units]
    assert sum(e.n_samples for e in entries) == 3 and sum(e.n_errors for e in entries) == 3
    reasons = {Path(e["uri"]).name: (e["stage"], e["reason"]) for e in bad_errors(tmp_path / "out")}
    assert reasons["nan.wav"] == ("decode", "audio holds 501 NaN or infinite samples")
    assert reasons["cut.flac"][0] == "decode" and "FLAC" in reasons["cut.flac"][1]
    assert reasons[speech[0].name] == ("read", f"changed since planning: {speech[0].stat().st_size} bytes, "
                                               f"planned {speech[0].stat().st_size - 64}")


def test_tar_member_name_that_is_not_utf8_costs_its_sample_only(tmp_path):
    photos = mf.write_photos(tmp_path / "photos")
    mf.write_tars_with_non_utf8_name(tmp_path / "corpus", photos)
    spec = parse_spec({"name": "unit", "source": {"uri": str(tmp_path / "corpus"), "format": "webdataset",
                                                   "modality": "binary"},
                       "tokenizer": {"kind": "bytes"}, "sink": {"uri": str(tmp_path / "out")}})
    entries = [UnitProcessor(spec)(u) for u in make_plan(spec)]
    assert sum(e.n_samples for e in entries) == 12 and sum(e.n_errors for e in entries) == 1
    [error] = bad_errors(tmp_path / "out")
    name = error["member"]
    assert name.startswith("caf\\xe9.") and error["reason"] == f"member name {name!r} is not valid UTF-8"


class FailsOnEmail:
    """A stage that raises on the records of one package (a stage bug meeting unusual input)."""

    name = "picky"
    stats: dict = {}

    def __call__(self, table: pa.Table) -> pa.Table:
        if any("/email/" in i for i in table.column("id").to_pylist()):
            raise ValueError("cannot stage this record")
        return table


def test_a_stage_that_fails_on_some_records_quarantines_those(tmp_path):
    copy_stdlib(tmp_path / "corpus", ("json",), limit=4)
    copy_stdlib(tmp_path / "corpus", ("email",), limit=2)
    spec = parse_spec({"name": "unit", "source": {"uri": str(tmp_path / "corpus"), "modality": "code",
                                                   "unit_bytes": "1MiB"},
                       "tokenizer": {"kind": "bytes"}, "sink": {"uri": str(tmp_path / "out")}})
    processor = UnitProcessor(spec)
    processor.stages = [FailsOnEmail()]
    [unit] = make_plan(spec)
    entry = processor(unit)
    assert entry.n_samples == 4 and entry.n_errors == 2
    assert {(e["stage"], e["reason"]) for e in bad_errors(tmp_path / "out")} == {
        ("stage", "stage picky failed: ValueError: cannot stage this record")}


def test_batches_are_cast_to_the_shards_dtype_and_concatenated_in_it():
    import numpy as np
    from pipeline.tokenizers.base import TokenBatch
    parts = [TokenBatch.from_flat(np.array(ids, np.uint32), np.array(offs), 7).astype("uint16")
             for ids, offs in (([1, 2, 3], [0, 2, 3]), ([65535], [0, 1]))]
    batch = TokenBatch.concat(parts)
    assert batch.values.dtype == np.uint16  # no round trip through uint32 before the shard column
    assert batch.values.tolist() == [1, 2, 7, 3, 7, 65535, 7] and batch.offsets.tolist() == [0, 3, 5, 7]
    mixed = TokenBatch.concat([parts[0], TokenBatch.from_flat(np.array([70000], np.uint32), np.array([0, 1]))])
    assert mixed.values.dtype == np.uint32 and mixed.values.tolist()[-1] == 70000


def test_the_first_unit_of_a_worker_finds_the_shard_writers_warm(tmp_path):
    """The processor builds and serialises an empty shard when it is made: pyarrow's lazy imports (pandas
    among them) happen then, not inside the first unit's build phase."""
    import subprocess
    import sys
    import pytest
    pytest.importorskip("pandas")  # what pyarrow imports lazily, when it is installed
    copy_stdlib(tmp_path / "corpus", ("json",))
    code = ("import sys; from pipeline.spec import parse_spec; from pipeline.unit import UnitProcessor; "
            f"spec = parse_spec({make_spec(tmp_path).model_dump(mode='json', exclude_unset=True)!r}); "
            "before = 'pandas' in sys.modules; UnitProcessor(spec); print(before, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout.split()
    assert out == ["False", "True"]
