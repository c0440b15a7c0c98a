"""`format: lines` and `format: jsonl`: one sample per line, over byte ranges of big files.

A unit owns the lines that start inside its byte range [start, end), so ranges cut at any
byte give every line to exactly one unit. Sample ids are `<uri>@<byte offset of the line>`
(in the decompressed stream for .gz/.bz2/.xz/.zst files, which are one unit each). A line
longer than limits.max_bytes is quarantined with its size; it is skipped in 1 MiB reads,
never held, so a 200 MB line costs no more memory than a short one.
"""
from __future__ import annotations

import json
from typing import IO, Any, Iterator

from pipeline.errors import Quarantined
from pipeline.plan import InputRef, WorkUnit
from pipeline.sources import RawRecord, read_inputs
from pipeline.sources.inputs import InputProblem, compression_of, open_input
from pipeline.spec import SourceSpec

_SKIP = 1 << 20  # an oversize line is read past in chunks of this size

try:  # orjson parses JSON lines 2-3x faster (docs/benchmarks.md); json is the fallback
    from orjson import loads as _loads
except ImportError:
    _loads = json.loads


def _skip_line(f: IO[bytes]) -> tuple[int, bytes]:
    """Read past the rest of the current line in bounded chunks: (bytes skipped, newline included; its last 2)."""
    skipped, tail = 0, b""
    while True:
        chunk = f.readline(_SKIP)
        skipped += len(chunk)
        tail = (tail + chunk[-2:])[-2:]
        if not chunk or chunk.endswith(b"\n"):
            return skipped, tail


def _newline(tail: bytes) -> int:
    return 2 if tail.endswith(b"\r\n") else 1 if tail.endswith(b"\n") else 0


def iter_lines(ref: InputRef, source: SourceSpec) -> Iterator[tuple[int, bytes | None, int]]:
    """(offset, line without its newline, its size) for lines starting in [ref.start, ref.end).

    A line over limits.max_bytes comes as (offset, None, size): the caller quarantines it.
    """
    limit = source.limits.max_bytes
    compressed = compression_of(ref.uri) is not None
    end = float("inf") if compressed else (ref.size if ref.end is None else ref.end)
    with open_input(ref, source) as f:
        pos = ref.start
        if pos > 0:
            f.seek(pos - 1)
            pos += _skip_line(f)[0] - 1
        while pos < end:
            chunk = f.readline(limit + 2)  # the line, its \r\n, and one byte more tells "too long"
            if not chunk:
                if not compressed and pos < end:
                    raise InputProblem(f"changed since planning: ends at byte {pos}, planned {end}")
                return
            if not chunk.endswith(b"\n") and len(chunk) == limit + 2:
                skipped, tail = _skip_line(f)
                consumed = len(chunk) + skipped
                yield pos, None, consumed - _newline((chunk[-2:] + tail)[-2:])
                pos += consumed
                continue
            line = chunk.rstrip(b"\r\n") if chunk.endswith(b"\n") else chunk
            yield pos, (line if len(line) <= limit else None), len(line)
            pos += len(chunk)


def _oversize(uri: str, offset: int, size: int, limit: int) -> Quarantined:
    return Quarantined(uri, f"@{offset}", f"line is {size} bytes, over limits.max_bytes={limit}", "read")


def read_lines(unit: WorkUnit, source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    """Each non-blank line is one sample (blank lines separate nothing and are skipped)."""
    def one(ref: InputRef) -> Iterator[RawRecord | Quarantined]:
        for offset, line, size in iter_lines(ref, source):
            if line is None:
                yield _oversize(ref.uri, offset, size, source.limits.max_bytes)
            elif line.strip():
                yield RawRecord(f"{ref.uri}@{offset}", ref.uri, line, len(line), member=f"@{offset}")
    return read_inputs(unit.inputs, one, "lines file")


_BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark, which Windows tools write at the start of a file


def read_jsonl(unit: WorkUnit, source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    """Each line is a JSON object; `source.field` holds the text, other scalars go to meta. A byte order mark
    before the first line is dropped (JSON parsers refuse it: that line was quarantined)."""
    def one(ref: InputRef) -> Iterator[RawRecord | Quarantined]:
        for offset, line, size in iter_lines(ref, source):
            if offset == 0 and line is not None and line.startswith(_BOM):
                line = line[len(_BOM):]
            if line is None:
                yield _oversize(ref.uri, offset, size, source.limits.max_bytes)
            elif line.strip():
                yield _parse(ref.uri, offset, line, source.field)
    return read_inputs(unit.inputs, one, "jsonl file")


def _parse(uri: str, offset: int, line: bytes, field: str) -> RawRecord | Quarantined:
    member = f"@{offset}"
    try:
        obj = _loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        try:  # orjson calls bad UTF-8 "surrogates not allowed": say which bytes are wrong instead
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Quarantined(uri, member, f"JSON line is not valid UTF-8: {bad}", "read")
        return Quarantined(uri, member, f"malformed JSON line: {exc}", "read")
    if not isinstance(obj, dict):
        return Quarantined(uri, member, f"JSON line is a {type(obj).__name__}, not an object", "read")
    if field not in obj:
        return Quarantined(uri, member, f"JSON object has no field {field!r}", "read")
    text = obj[field]
    if not isinstance(text, str):
        return Quarantined(uri, member, f"field {field!r} is {type(text).__name__}, not a string", "read")
    meta: dict[str, Any] = {k: v for k, v in obj.items()
                            if k != field and isinstance(v, (str, int, float, bool)) and len(str(v)) <= 256}
    # n_bytes is the text's own UTF-8 size, as for every format (not the JSON line with its escapes and fields)
    n_bytes = len(text) if text.isascii() else len(text.encode("utf-8"))  # isascii is a flag check: no copy
    return RawRecord(f"{uri}@{offset}", uri, text, n_bytes, member=member, meta=meta)
