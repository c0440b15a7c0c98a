"""Compressed inputs (.gz, .zst, .bz2, .xz) read transparently, one unit each, bombs quarantined unheld."""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.errors import Quarantined
from pipeline.plan import cut_units, list_inputs
from pipeline.sources import RawRecord, reader_for
from pipeline.spec import parse_spec
from tests.tm_testing import STDLIB


def zstd_bytes(data: bytes, frames: int = 3) -> bytes:
    """zstd as multi-threaded compressors write it: several frames one after the other."""
    step = len(data) // frames + 1
    out = pa.BufferOutputStream()
    for i in range(0, len(data), step):
        sink = pa.BufferOutputStream()
        with pa.CompressedOutputStream(sink, "zstd") as z:
            z.write(data[i:i + step])
        out.write(sink.getvalue())
    return out.getvalue().to_pybytes()


COMPRESS = {"gz": gzip.compress, "zst": zstd_bytes, "bz2": bz2.compress, "xz": lzma.compress}


def jsonl_corpus() -> bytes:
    """Real stdlib modules as JSON lines, as corpora ship them."""
    files = sorted((STDLIB / "email").glob("*.py"))[:40]
    return b"".join(json.dumps({"text": p.read_text(), "name": p.name}).encode() + b"\n" for p in files)


def read_all(path: Path, fmt: str, unit_bytes: int = 20_000, **limits):
    spec = parse_spec({"name": "t", "source": {"uri": str(path), "format": fmt, "unit_bytes": unit_bytes,
                                                "limits": limits},
                       "tokenizer": {"kind": "bytes"}, "sink": {"uri": str(path.parent / "out")}})
    units = cut_units(spec, list_inputs([str(path)]))
    return units, [item for u in units for item in reader_for(fmt)(u, spec.source)]


@pytest.mark.parametrize("ext", sorted(COMPRESS))
def test_compressed_jsonl_reads_like_the_plain_file(tmp_path, ext):
    data = jsonl_corpus()
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "docs.jsonl").write_bytes(data)
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / f"docs.jsonl.{ext}").write_bytes(COMPRESS[ext](data))
    plain_units, plain = read_all(tmp_path / "plain" / "docs.jsonl", "jsonl")
    units, packed = read_all(tmp_path / "packed" / f"docs.jsonl.{ext}", "jsonl")
    assert len(plain_units) > 1 and len(units) == 1, "a compressed file cannot be split by byte range: one unit"
    assert all(isinstance(r, RawRecord) for r in packed) and len(packed) == len(plain) >= 20
    assert [(r.data, r.member, r.meta) for r in packed] == [(r.data, r.member, r.meta) for r in plain]


def test_compressed_lines_and_files(tmp_path):
    text = (STDLIB / "this.py").read_bytes() + (STDLIB / "csv.py").read_bytes()
    (tmp_path / "t.txt.gz").write_bytes(gzip.compress(text))
    _, lines = read_all(tmp_path / "t.txt.gz", "lines")
    assert [r.data for r in lines] == [line for line in text.split(b"\n") if line.strip()]
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "csv.py.xz").write_bytes(lzma.compress((STDLIB / "csv.py").read_bytes()))
    _, files = read_all(tmp_path / "f", "files")
    assert [r.data for r in files] == [(STDLIB / "csv.py").read_bytes()]


def test_gzip_bomb_is_quarantined_without_being_held(tmp_path):
    (tmp_path / "f").mkdir()
    bomb = gzip.compress(b"\0" * (64 << 20), 9)  # 64 MiB of zeros in ~64 KiB
    (tmp_path / "f" / "bomb.bin.gz").write_bytes(bomb)
    (tmp_path / "line.txt.gz").write_bytes(gzip.compress(b"first\n" + b"0" * (64 << 20) + b"\nlast\n", 9))
    tracemalloc.start()
    _, files = read_all(tmp_path / "f", "files", max_bytes="1MiB")
    _, lines = read_all(tmp_path / "line.txt.gz", "lines", max_bytes="1MiB")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(files) == 1 and isinstance(files[0], Quarantined)
    assert "decompresses to more than limits.max_bytes=1048576" in files[0].reason
    assert [getattr(r, "data", None) for r in lines] == [b"first", None, b"last"]
    assert lines[1].reason == "line is 67108864 bytes, over limits.max_bytes=1048576" and lines[1].member == "@6"
    assert peak < 24 << 20, f"held {peak / 2**20:.1f} MiB for 64 MiB bombs with a 1 MiB limit"


def test_a_cut_gzip_keeps_what_came_before_the_cut(tmp_path):
    packed = gzip.compress(jsonl_corpus())
    (tmp_path / "cut.jsonl.gz").write_bytes(packed[: len(packed) * 2 // 3])
    _, items = read_all(tmp_path / "cut.jsonl.gz", "jsonl")
    good = [i for i in items if isinstance(i, RawRecord)]
    assert 3 < len(good) < 20 and isinstance(items[-1], Quarantined)
    assert items[-1].reason.startswith("unreadable jsonl file: EOFError: Compressed file ended")
