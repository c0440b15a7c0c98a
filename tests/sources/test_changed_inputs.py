"""Inputs that change between planning and reading are quarantined "changed since planning", never cut."""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import Quarantined
from pipeline.plan import make_plan
from pipeline.sources import RawRecord, reader_for
from pipeline.spec import parse_spec
from tests.tm_testing import STDLIB


def spec_for(folder: Path, fmt: str):
    return parse_spec({"name": "t", "source": {"uri": str(folder), "format": fmt, "modality": "code"},
                       "tokenizer": {"kind": "bytes"}, "sink": {"uri": str(folder.parent / "out")}})


def write_inputs(folder: Path, fmt: str) -> list[Path]:
    """Two real inputs of the format, from stdlib modules."""
    folder.mkdir()
    paths = []
    for name in ("csv.py", "this.py"):
        text = (STDLIB / name).read_text()
        if fmt == "files":
            path = folder / name
            path.write_text(text)
        elif fmt == "lines":
            path = folder / f"{name}.txt"
            path.write_text(text)
        elif fmt == "jsonl":
            path = folder / f"{name}.jsonl"
            path.write_text("".join(json.dumps({"text": line}) + "\n" for line in text.splitlines() if line))
        elif fmt == "parquet":
            path = folder / f"{name}.parquet"
            pq.write_table(pa.table({"text": text.splitlines()}), path)
        else:
            path = folder / f"{name}.tar"
            with tarfile.open(path, "w") as tar:
                info = tarfile.TarInfo("doc.py")
                info.size = len(text.encode())
                tar.addfile(info, io.BytesIO(text.encode()))
        paths.append(path)
    return paths


@pytest.mark.parametrize("fmt", ["files", "lines", "jsonl", "parquet", "webdataset"])
@pytest.mark.parametrize("change", ["grown", "deleted", "replaced"])
def test_changed_input_is_quarantined_and_the_other_read(tmp_path, fmt, change):
    folder = tmp_path / "c"
    changed, kept = write_inputs(folder, fmt)
    spec = spec_for(folder, fmt)
    units = make_plan(spec)
    expected = [i for u in units for i in reader_for(fmt)(u, spec.source) if i.source == str(kept)] \
        if fmt != "files" else None
    if change == "grown":
        with open(changed, "ab") as f:
            f.write(b"appended after planning\n")
    elif change == "deleted":
        os.remove(changed)
    else:  # same size, new content and mtime: a rewrite in place
        data = changed.read_bytes()
        changed.write_bytes(data[::-1])
        os.utime(changed, ns=(os.stat(kept).st_mtime_ns + 10**9,) * 2)
    items = [i for u in units for i in reader_for(fmt)(u, spec.source)]
    bad = [i for i in items if isinstance(i, Quarantined)]
    assert [b.uri for b in bad] == [str(changed)]
    assert bad[0].reason.startswith("changed since planning")
    good = [i for i in items if isinstance(i, RawRecord)]
    assert good and all(i.source == str(kept) for i in good)
    if expected is not None:
        assert [(i.id, i.data) for i in good] == [(i.id, i.data) for i in expected]


def test_a_symlink_that_replaced_a_planned_file_is_not_read(tmp_path):
    folder = tmp_path / "c"
    changed, _ = write_inputs(folder, "files")
    spec = spec_for(folder, "files")
    units = make_plan(spec)
    os.remove(changed)
    shutil.copyfile(STDLIB / "csv.py", tmp_path / "elsewhere.py")
    changed.symlink_to(tmp_path / "elsewhere.py")
    bad = [i for u in units for i in reader_for("files")(u, spec.source) if isinstance(i, Quarantined)]
    assert len(bad) == 1 and bad[0].reason.startswith("changed since planning: version ")
