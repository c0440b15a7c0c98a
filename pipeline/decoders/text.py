"""Text decoding: strict UTF-8 (bad bytes are quarantined, or replaced when the spec says)."""
from __future__ import annotations

from pipeline.errors import EMPTY, DecodeError
from pipeline.sources import RawRecord
from pipeline.spec import SourceSpec


def decode_text(record: RawRecord, source: SourceSpec) -> str:
    """The record's text; empty documents and invalid UTF-8 raise DecodeError."""
    data = record.data
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if source.encoding_errors != "replace":
                raise DecodeError(record.source, record.member,
                                  f"invalid UTF-8 at byte {exc.start}: {data[exc.start:exc.start + 4]!r}") from exc
            data = data.decode("utf-8", errors="replace")
    if not data:
        raise DecodeError(record.source, record.member, "empty document", EMPTY)
    return data


def decode_binary(record: RawRecord, source: SourceSpec) -> bytes:
    """Raw bytes; only emptiness is an error."""
    data = record.data.encode("utf-8") if isinstance(record.data, str) else record.data
    if not data:
        raise DecodeError(record.source, record.member, "empty file", EMPTY)
    return data
