"""`format: files`: one sample per file, read whole (bounded by limits.max_bytes)."""
from __future__ import annotations

from typing import Iterator

from pipeline.errors import Quarantined
from pipeline.plan import WorkUnit
from pipeline.sources import RawRecord
from pipeline.spec import SourceSpec
from pipeline.storage import filesystem, is_local

_REMOTE_BATCH = 64  # objects fetched concurrently from an object store


def read_files(unit: WorkUnit, source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    """Yield each file of the unit as one record; oversized files are quarantined unread."""
    limit = source.limits.max_bytes
    refs = [r for r in unit.inputs]
    for ref in refs:
        if ref.size > limit:
            yield Quarantined(ref.uri, "", f"file is {ref.size} bytes, over limits.max_bytes={limit}", "read")
    wanted = [r for r in refs if r.size <= limit]
    if not wanted:
        return
    fs, _ = filesystem(wanted[0].uri, source.storage_options)
    if is_local(fs):
        for ref in wanted:
            with open(ref.uri, "rb") as f:
                data = f.read(limit + 1)
            yield RawRecord(ref.uri, ref.uri, data, len(data))
        return
    for i in range(0, len(wanted), _REMOTE_BATCH):
        batch = wanted[i:i + _REMOTE_BATCH]
        paths = [fs._strip_protocol(r.uri) for r in batch]
        blobs = fs.cat(paths, on_error="return")
        for ref, path in zip(batch, paths):
            data = blobs.get(path)
            if isinstance(data, BaseException):
                raise data
            yield RawRecord(ref.uri, ref.uri, data, len(data))
