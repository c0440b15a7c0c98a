"""limits.max_bytes bounds every record of every format, checked before its bytes are held."""
from __future__ import annotations

import io
import json
import tarfile
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import Quarantined
from pipeline.plan import cut_units, list_inputs
from pipeline.sources import RawRecord, reader_for
from pipeline.spec import parse_spec
from tests.tm_testing import STDLIB

MIB = 1 << 20


def real_text(n_bytes: int) -> str:
    """n_bytes of real stdlib source as one line (a minified blob, as web corpora have)."""
    parts, size = [], 0
    for path in sorted((STDLIB / "email").rglob("*.py")) * 50:
        chunk = path.read_text().replace("\n", " ")
        parts.append(chunk)
        size += len(chunk)
        if size >= n_bytes:
            break
    return "".join(parts)[:n_bytes]


def read_all(path: Path, fmt: str, **source):
    spec = parse_spec({"name": "t", "source": {"uri": str(path), "format": fmt, "limits": {"max_bytes": "1MiB"},
                                                **source},
                       "tokenizer": {"kind": "bytes"}, "sink": {"uri": str(path.parent / "out")}})
    units = cut_units(spec, list_inputs([str(path)]))
    tracemalloc.start()
    items = [item for u in units for item in reader_for(fmt)(u, spec.source)]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return items, peak


def test_a_long_line_is_quarantined_with_its_size_and_never_held(tmp_path):
    path = tmp_path / "l.txt"
    long = real_text(12 * MIB).encode()
    path.write_bytes(b"short one\n" + long + b"\nshort two\n")
    items, peak = read_all(path, "lines")
    assert [getattr(i, "data", None) for i in items] == [b"short one", None, b"short two"]
    assert items[1].reason == f"line is {len(long)} bytes, over limits.max_bytes={MIB}" and items[1].member == "@10"
    assert peak < 8 * MIB, f"held {peak / MIB:.1f} MiB for a 12 MiB line with a 1 MiB limit"


def test_jsonl_record_over_the_limit(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "small"}, {"text": real_text(3 * MIB)}, {"text": "after"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items, _ = read_all(path, "jsonl")
    assert [getattr(i, "data", None) for i in items] == ["small", None, "after"]
    assert "over limits.max_bytes=1048576" in items[1].reason


def test_parquet_value_over_the_limit_is_never_a_python_object(tmp_path):
    path = tmp_path / "p.parquet"
    big = real_text(3 * MIB)
    pq.write_table(pa.table({"text": ["small", big, "after"]}), path)
    items, _ = read_all(path, "parquet")
    assert [getattr(i, "data", None) for i in items] == ["small", None, "after"]
    assert items[1].reason == f"value is {len(big.encode())} bytes, over limits.max_bytes={MIB}"
    assert items[1].member == "#1"


def tar_of(path: Path, members: list[tuple[str, bytes]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_tar_limit_is_per_sample_and_a_tar_bomb_costs_no_memory(tmp_path):
    text = real_text(700_000).encode()
    path = tar_of(tmp_path / "s.tar", [("a.txt", b"fine"), ("b.txt", text), ("b.md", text), ("c.txt", b"also fine")])
    items, _ = read_all(path, "webdataset")
    assert [getattr(i, "data", None) for i in items] == [b"fine", None, b"also fine"]
    assert items[1].member == "b.md" and "over limits.max_bytes=1048576" in items[1].reason

    zeros = b"\0" * (24 * MIB)
    bomb = tar_of(tmp_path / "bomb.tar.gz", [(f"m{i}.txt", zeros) for i in range(6)] + [("ok.txt", b"last")], "w:gz")
    assert bomb.stat().st_size < 2 * MIB
    items, peak = read_all(bomb, "webdataset")
    assert [type(i) for i in items] == [Quarantined] * 6 + [RawRecord] and items[-1].data == b"last"
    assert peak < 12 * MIB, f"held {peak / MIB:.1f} MiB reading a tar of 6 x 24 MiB members, limit 1 MiB"


def test_a_truncated_parquet_file_is_quarantined_and_the_others_read(tmp_path):
    (tmp_path / "c").mkdir()
    for name in ("a", "b"):
        pq.write_table(pa.table({"text": [f"{name} row {i}" for i in range(50)]}), tmp_path / "c" / f"{name}.parquet")
    good = (tmp_path / "c" / "b.parquet").read_bytes()
    (tmp_path / "c" / "b.parquet").write_bytes(good[: len(good) - 40])  # the footer is gone
    items, _ = read_all(tmp_path / "c", "parquet")
    assert sum(isinstance(i, RawRecord) for i in items) == 50
    bad = [i for i in items if isinstance(i, Quarantined)]
    assert len(bad) == 1 and bad[0].uri.endswith("b.parquet")
    assert bad[0].reason.startswith("not a readable parquet file: ArrowInvalid: ")
