import json

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.decoders.text import decode_text
from pipeline.errors import DecodeError, Quarantined
from pipeline.plan import cut_units, list_inputs
from pipeline.sources import reader_for
from pipeline.spec import parse_spec


def read_all(path, fmt, **source):
    spec = parse_spec({"name": "t", "source": {"uri": str(path), "format": fmt, **source},
                       "tokenizer": {"kind": "bytes"}, "sink": {"uri": "/tmp/x"}})
    units = cut_units(spec, list_inputs([str(path)]))
    return [item for u in units for item in reader_for(fmt)(u, spec.source)], spec


def test_jsonl_quarantines_malformed_and_fieldless_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "good one", "lang": "en"}\n{not json\n{"body": "no text"}\n[1,2]\n{"text": 5}\n'
                    '{"text": "second"}\n')
    items, _ = read_all(path, "jsonl")
    good = [i for i in items if not isinstance(i, Quarantined)]
    bad = [i for i in items if isinstance(i, Quarantined)]
    assert [g.data for g in good] == ["good one", "second"]
    assert good[0].meta == {"lang": "en"}
    assert good[0].id == f"{path}@0"
    reasons = " | ".join(b.reason for b in bad)
    assert len(bad) == 4
    assert "malformed JSON" in reasons and "no field 'text'" in reasons and "not an object" in reasons
    assert all(b.member.startswith("@") for b in bad)


def test_a_jsonl_line_in_another_encoding_is_said_to_be_bad_utf8(tmp_path):
    """A line saved as Latin-1 in a UTF-8 file (a mislabelled encoding): its reason names the byte, not orjson's
    'surrogates not allowed'; its neighbours are read."""
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"text": "before"}\n' + '{"text": "caf\u00e9 cr\u00e8me"}\n'.encode("latin-1")
                     + b'{"text": "after"}\n')
    items, _ = read_all(path, "jsonl")
    assert [i.data for i in items if not isinstance(i, Quarantined)] == ["before", "after"]
    (bad,) = [i for i in items if isinstance(i, Quarantined)]
    assert bad.reason.startswith("JSON line is not valid UTF-8: 'utf-8' codec can't decode byte 0xe9 in position 13")


def test_a_jsonl_file_saved_with_a_byte_order_mark_keeps_its_first_line(tmp_path):
    """Saved as Windows tools save UTF-8 (`utf-8-sig`: a BOM first): the first line is read like the rest, under
    its own offset; a BOM anywhere else is the line's own bytes, and malformed JSON."""
    path = tmp_path / "notepad.jsonl"
    path.write_text('{"text": "first"}\n{"text": "second"}\n', encoding="utf-8-sig")
    items, _ = read_all(path, "jsonl")
    assert [(i.data, i.id) for i in items] == [("first", f"{path}@0"), ("second", f"{path}@21")]
    path.write_bytes(b'{"text": "first"}\n\xef\xbb\xbf{"text": "second"}\n')
    items, _ = read_all(path, "jsonl")
    assert [i.data for i in items if not isinstance(i, Quarantined)] == ["first"]
    assert "malformed JSON line" in next(i for i in items if isinstance(i, Quarantined)).reason


def test_parquet_without_the_column_is_quarantined(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"body": ["x", "y"]}), path)
    items, _ = read_all(path, "parquet")
    assert len(items) == 1 and isinstance(items[0], Quarantined)
    assert "no column 'text'" in items[0].reason


def test_parquet_rows_and_nulls(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"]}), path)
    items, _ = read_all(path, "parquet")
    assert [getattr(i, "data", None) for i in items] == ["a", None, "c"]
    assert isinstance(items[1], Quarantined) and items[1].member == "#1"
    assert items[2].id == f"{path}#2"


def test_invalid_utf8_and_empty_files_raise_decode_errors(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "good.txt").write_text("caf\u00e9")
    items, spec = read_all(tmp_path, "files")
    results = {}
    for item in items:
        try:
            results[item.id.rsplit("/", 1)[1]] = decode_text(item, spec.source)
        except DecodeError as err:
            results[item.id.rsplit("/", 1)[1]] = err.reason
    assert results["good.txt"] == "caf\u00e9"
    assert results["bad.txt"].startswith("invalid UTF-8 at byte 3")
    assert results["empty.txt"] == "empty document"


def test_oversized_file_is_quarantined_unread(tmp_path):
    (tmp_path / "big.txt").write_text("x" * 5000)
    items, _ = read_all(tmp_path, "files", limits={"max_bytes": 1000})
    assert isinstance(items[0], Quarantined) and "over limits.max_bytes" in items[0].reason


def test_lines_skip_blank_lines_and_keep_offsets(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("alpha\n\nbeta\r\n")
    items, _ = read_all(path, "lines")
    assert [(i.data, i.member) for i in items] == [(b"alpha", "@0"), (b"beta", "@7")]
    json.dumps([i.id for i in items])


def test_n_bytes_is_the_texts_utf8_size_in_jsonl_and_parquet(tmp_path):
    from tests.tm_testing import STDLIB
    docs = [p.read_text(encoding="utf-8") for p in sorted((STDLIB / "json").glob("*.py"))]
    docs.append("naïve café: « quotes », tabs\t and \"escapes\" \\ ")  # JSON escapes these; the text is what counts
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": d, "lang": "en"}) + "\n" for d in docs))
    pq.write_table(pa.table({"text": docs}), tmp_path / "d.parquet")
    from_jsonl, _ = read_all(tmp_path / "d.jsonl", "jsonl")
    from_parquet, _ = read_all(tmp_path / "d.parquet", "parquet")
    want = [len(d.encode("utf-8")) for d in docs]
    assert [r.n_bytes for r in from_jsonl] == want == [r.n_bytes for r in from_parquet]
