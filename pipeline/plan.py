"""Planning: list inputs, fingerprint them, and cut deterministic work units.

Units are cut from the listing alone (parquet: plus each file's footer), so planning is
cheap and gives the same units on every rerun. Small files are grouped by content-defined
boundaries over the sorted listing: a file ends a unit when a hash of its path falls under
size/unit_bytes. Adding or removing one file therefore changes only the unit it falls in,
which is what makes nightly incremental runs redo only new work. A small corpus is grouped
by a smaller size (group_bytes), so it still gives enough units to share between workers;
that size steps with the listing's total (powers of two), and a step regroups its small files. Cost: O(n) in the listing.
Entries the listing cannot read (pipeline.sources.listing) ride in units like files of
size 0, so their readers quarantine them and the run counts them. Compressed lines/jsonl
files are one unit each: a compressed stream cannot be entered at a byte offset.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from pipeline.dataset import layout
from pipeline.errors import SpecError
from pipeline.sources.inputs import compression_of, is_transient
from pipeline.sources.listing import InputFile, corpus_root, list_inputs, relative_name
from pipeline.spec import JobSpec
from pipeline.storage import filesystem

__all__ = ["InputFile", "InputRef", "WorkUnit", "cut_units", "group_bytes", "list_inputs", "make_plan", "plan_summary"]

_MAX_UNIT_FACTOR = 4  # a unit of small files never grows past 4x unit_bytes
# A big lines/jsonl/parquet file is cut into SPLIT_PIECES units (2 workers x 2 units each) or more, never into
# units under MIN_SPLIT_BYTES nor over unit_bytes: 4 units from 16 MiB up, so a single 20 or 40 MB file keeps
# 2 workers busy. A function of the file alone, never of the cluster, so the same corpus gives the same units
# (and shards) on any cluster.
SPLIT_PIECES = 4
MIN_SPLIT_BYTES = 4 << 20


GROUP_PIECES = 8  # small files are grouped into about this many units or more, from 32 MiB up (group_bytes)


def group_bytes(total: int, unit_bytes: int) -> int:
    """The unit size small files totalling `total` bytes are grouped by: unit_bytes, halved while that would
    give fewer than GROUP_PIECES units, never under MIN_SPLIT_BYTES.

    Content-defined groups vary in size (their bytes are about exponentially distributed, so a few units
    hold most of a small corpus: 200 MB of code files gave units of 8.8, 24.5, 62.4 and 104.5 MB at 64 MiB),
    and two workers only share the work evenly over many units. A function of the listing's total, in
    powers of two, so the groups (and their shards) change only when the total crosses 8x one of those
    sizes: 64, 128, 256 and 512 MiB at the default unit_bytes; above GROUP_PIECES x unit_bytes never.
    """
    target = unit_bytes
    while target // 2 >= MIN_SPLIT_BYTES and total < GROUP_PIECES * target:
        target //= 2
    return target


def piece_bytes(size: int, unit_bytes: int) -> int:
    """The unit size a file of `size` bytes is cut by: unit_bytes, or less so it gives SPLIT_PIECES units."""
    return min(unit_bytes, max(MIN_SPLIT_BYTES, -(-size // SPLIT_PIECES)))


@dataclass(frozen=True)
class InputRef:
    """A slice of one input a unit covers: byte range (lines/jsonl) or row groups (parquet)."""

    uri: str
    size: int
    version: str
    start: int = 0
    end: int | None = None  # None: to the end
    problem: str = ""  # a listed entry that is not read: its reader quarantines it with this reason
    n_bytes: int | None = None  # the bytes this slice reads, where start..end are not bytes (parquet row groups)

    @property
    def read_bytes(self) -> int:
        if self.n_bytes is not None:
            return self.n_bytes
        return (self.end if self.end is not None else self.size) - self.start

    def to_json(self) -> dict[str, Any]:
        data = {"uri": self.uri, "size": self.size, "version": self.version, "start": self.start, "end": self.end}
        if self.problem:  # built by hand: dataclasses.asdict deep-copies, 22 us a file (28 ms of a 22 MB unit)
            data["problem"] = self.problem
        if self.n_bytes is not None:
            data["n_bytes"] = self.n_bytes
        return data


@dataclass(frozen=True)
class WorkUnit:
    """A deterministic slice of the input; produces exactly one shard."""

    id: str
    inputs: tuple[InputRef, ...]
    fingerprint: str
    n_bytes: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def shard_name(self) -> str:
        return layout.shard_name(self.id, self.fingerprint)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "fingerprint": self.fingerprint, "n_bytes": self.n_bytes,
                "inputs": [r.to_json() for r in self.inputs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "WorkUnit":
        return cls(data["id"], tuple(InputRef(**r) for r in data["inputs"]),
                   data["fingerprint"], data["n_bytes"])


def _unit_id(refs: Iterable[InputRef], root: str) -> str:
    key = "\n".join(f"{relative_name(r.uri, root)}|{r.start}|{r.end}" for r in refs)
    return "u-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def _make_unit(refs: list[InputRef], root: str) -> WorkUnit:
    """A unit of these slices; its id and fingerprint use names below the corpus root, not where it is mounted."""
    fp = hashlib.sha256("\n".join(f"{relative_name(r.uri, root)}|{r.size}|{r.version}" for r in refs)
                        .encode()).hexdigest()[:20]
    n_bytes = sum(r.read_bytes for r in refs)
    return WorkUnit(_unit_id(refs, root), tuple(refs), fp, n_bytes)


def _ends_unit(f: InputFile, unit_bytes: int, root: str) -> bool:
    """Content-defined boundary: P(boundary) = size / unit_bytes, a pure function of the file and its name."""
    h = int.from_bytes(hashlib.blake2b(relative_name(f.uri, root).encode(), digest_size=8).digest(), "big") / 2**64
    return h < f.size / unit_bytes


def group_small_files(files: list[InputFile], unit_bytes: int, root: str = "") -> Iterator[list[InputRef]]:
    """Group files into units of about unit_bytes with boundaries that survive insertions."""
    group: list[InputRef] = []
    total = 0
    for f in files:
        group.append(InputRef(f.uri, f.size, f.version, problem=f.problem))
        total += f.size
        if _ends_unit(f, unit_bytes, root) or total >= _MAX_UNIT_FACTOR * unit_bytes:
            yield group
            group, total = [], 0
    if group:
        yield group


def split_by_bytes(f: InputFile, unit_bytes: int) -> Iterator[list[InputRef]]:
    """Byte ranges of a large line-oriented file; a unit owns the lines that start in it."""
    for start in range(0, f.size, unit_bytes):
        yield [InputRef(f.uri, f.size, f.version, start, min(start + unit_bytes, f.size))]


def split_parquet(f: InputFile, unit_bytes: int, storage_options: dict[str, Any] | None) -> Iterator[list[InputRef]]:
    """Ranges of row groups of about unit_bytes (uncompressed) each; an unreadable file is one unit. A range's
    n_bytes is what it reads: its column chunks' compressed bytes.

    That unit's reader quarantines the file with the parquet error, so one truncated file
    never stops the run; storage I/O that may pass stops planning instead (rerun it).
    """
    import pyarrow.parquet as pq
    fs, path = filesystem(f.uri, storage_options)
    try:
        with fs.open(path, "rb") as handle:
            meta = pq.ParquetFile(handle).metadata
    except Exception as exc:  # noqa: BLE001 - any footer failure: the reader says why
        if is_transient(exc):
            raise SpecError(f"source.uri: cannot read the footer of {f.uri}: {type(exc).__name__}: {exc}; "
                            "rerun when the storage answers") from None
        yield [InputRef(f.uri, f.size, f.version)]
        return
    start, total, read = 0, 0, 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        total += group.total_byte_size
        read += sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        if total >= unit_bytes:
            yield [InputRef(f.uri, f.size, f.version, start, g + 1, n_bytes=read)]
            start, total, read = g + 1, 0, 0
    if start < meta.num_row_groups or meta.num_row_groups == 0:
        yield [InputRef(f.uri, f.size, f.version, start, meta.num_row_groups, n_bytes=read)]


def cut_units(spec: JobSpec, files: list[InputFile]) -> list[WorkUnit]:
    """The job's work units, sorted by their first input (the index order)."""
    unit_bytes = spec.source.unit_bytes
    fmt = spec.source.format
    groups: list[list[InputRef]] = []
    small: list[InputFile] = []
    for f in files:
        if f.problem:
            small.append(f)
        elif fmt == "parquet":
            groups.extend(split_parquet(f, piece_bytes(f.size, unit_bytes), spec.source.storage_options))
        elif fmt in ("lines", "jsonl") and f.size > piece_bytes(f.size, unit_bytes) and not compression_of(f.uri):
            groups.extend(split_by_bytes(f, piece_bytes(f.size, unit_bytes)))
        else:
            small.append(f)
    root = corpus_root(spec.source.uris)
    groups.extend(group_small_files(small, group_bytes(sum(f.size for f in small), unit_bytes), root))
    units = [_make_unit(g, root) for g in groups]
    return sorted(units, key=lambda u: (u.inputs[0].uri, u.inputs[0].start))


def make_plan(spec: JobSpec) -> list[WorkUnit]:
    """List the spec's inputs and cut them into units."""
    source = spec.source
    return cut_units(spec, list_inputs(source.uris, source.storage_options, source.follow_symlinks))


def plan_summary(units: list[WorkUnit]) -> str:
    """One JSON line per unit, for `tokenmill plan`."""
    return "\n".join(json.dumps(u.to_json(), sort_keys=True) for u in units)
