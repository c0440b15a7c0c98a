"""`format: files`: one sample per file, read whole, never more than limits.max_bytes of it.

A compressed file (.gz, .bz2, .xz, .zst) is one sample of its decompressed bytes, read up to
max_bytes + 1: a gzip bomb is quarantined after max_bytes, never held whole. Local files are
opened one by one (regular files only, unchanged since planning); object-store files are
fetched 64 at a time (one GET each), and a size that is not the planned one quarantines the object.
"""
from __future__ import annotations

from typing import Iterator

from pipeline.errors import Quarantined
from pipeline.plan import InputRef, WorkUnit
from pipeline.sources import RawRecord, read_inputs
from pipeline.sources.inputs import (InputProblem, check_unchanged, compression_of, is_local_uri, open_input,
                                     read_local, read_up_to, storage_error)
from pipeline.spec import SourceSpec
from pipeline.storage import cat_objects, filesystem

_REMOTE_BATCH = 64  # objects fetched concurrently from an object store
_BATCHED_MAX_BYTES = 16 << 20  # larger objects are opened one by one (s3fs reads those in concurrent ranges)


def read_files(unit: WorkUnit, source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    """Yield each file of the unit as one record, in unit order; oversized files are quarantined unread."""
    limit = source.limits.max_bytes
    batch: list[InputRef] = []  # plain objects of an object store, fetched together
    for ref in unit.inputs:
        if (ref.problem or compression_of(ref.uri) or ref.size > min(limit, _BATCHED_MAX_BYTES)
                or is_local_uri(ref.uri)):
            yield from _fetch(batch, source)
            batch = []
            yield from read_inputs([ref], lambda r: _read_one(r, source), "file")
            continue
        batch.append(ref)
        if len(batch) >= _REMOTE_BATCH:
            yield from _fetch(batch, source)
            batch = []
    yield from _fetch(batch, source)


def _read_one(ref: InputRef, source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    limit = source.limits.max_bytes
    if ref.size > limit:
        yield Quarantined(ref.uri, "", f"file is {ref.size} bytes, over limits.max_bytes={limit}", "read")
        return
    compressed = bool(compression_of(ref.uri))
    if compressed or not is_local_uri(ref.uri):
        with open_input(ref, source, buffered=compressed) as f:  # one byte past what is allowed tells "too big"
            data = read_up_to(f, limit + 1 if compressed else ref.size + 1)
    else:
        data = read_local(ref, ref.size + 1)
    if len(data) > limit:
        yield Quarantined(ref.uri, "", f"decompresses to more than limits.max_bytes={limit} bytes "
                          f"({ref.size} bytes compressed); not read further", "read")
        return
    if not compressed and len(data) != ref.size:
        raise InputProblem(f"changed since planning: read {len(data)} bytes, planned {ref.size}")
    yield RawRecord(ref.uri, ref.uri, data, len(data))


def _fetch(batch: list[InputRef], source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    if not batch:
        return
    fs, _ = filesystem(batch[0].uri, source.storage_options)
    paths = [fs._strip_protocol(r.uri) for r in batch]
    blobs = cat_objects(fs, paths)
    for ref, path in zip(batch, paths):
        data = blobs.get(path)
        try:
            if isinstance(data, BaseException):
                raise storage_error(ref.uri, data, "read")
            check_unchanged(ref.uri, ref.size, "", len(data), "")  # the etag is checked where a file is opened
        except InputProblem as exc:
            yield Quarantined(ref.uri, "", str(exc), "read")
            continue
        yield RawRecord(ref.uri, ref.uri, data, len(data))
