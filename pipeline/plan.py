"""Planning: list inputs, fingerprint them, and cut deterministic work units.

Units are cut from the listing alone (parquet: plus each file's footer), so planning is
cheap and gives the same units on every rerun. Small files are grouped by content-defined
boundaries over the sorted listing: a file ends a unit when a hash of its path falls under
size/unit_bytes. Adding or removing one file therefore changes only the unit it falls in,
which is what makes nightly incremental runs redo only new work. Cost: O(n) in the listing.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

from pipeline.dataset import layout
from pipeline.errors import SpecError
from pipeline.spec import JobSpec
from pipeline.storage import filesystem, is_local

_GLOB_CHARS = "*?["
_MAX_UNIT_FACTOR = 4  # a unit of small files never grows past 4x unit_bytes


@dataclass(frozen=True)
class InputFile:
    """One listed input object and its fingerprint fields."""

    uri: str
    size: int
    version: str  # etag on object stores, mtime_ns on local disks

    @property
    def fingerprint(self) -> str:
        return f"{self.size}:{self.version}"


@dataclass(frozen=True)
class InputRef:
    """A slice of one input a unit covers: byte range (lines/jsonl) or row groups (parquet)."""

    uri: str
    size: int
    version: str
    start: int = 0
    end: int | None = None  # None: to the end


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
                "inputs": [asdict(r) for r in self.inputs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "WorkUnit":
        return cls(data["id"], tuple(InputRef(**r) for r in data["inputs"]),
                   data["fingerprint"], data["n_bytes"])


def _version(info: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "md5Hash", "crc32c"):
        if info.get(key):
            return str(info[key]).strip('"')
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        if info.get(key) is not None:
            value = info[key]
            return str(int(value * 1e9)) if isinstance(value, float) else str(value)
    return ""


def list_inputs(uris: Iterable[str], storage_options: dict[str, Any] | None = None) -> list[InputFile]:
    """All input files under the URIs (globs, folders or single files), sorted by URI."""
    found: dict[str, InputFile] = {}
    for uri in uris:
        try:
            found.update(_list_one(uri, storage_options))
        except (PermissionError, ConnectionError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise SpecError(f"source.uri: no such file or folder: {uri}") from None
            raise SpecError(f"source.uri: cannot list {uri}: {type(exc).__name__}: {exc}") from None
    if not found:
        raise SpecError(f"source.uri: nothing matches {list(uris)}; check the path or glob")
    return [found[k] for k in sorted(found)]


def _list_one(uri: str, storage_options: dict[str, Any] | None) -> dict[str, InputFile]:
    """The input files under one URI (a glob, a folder or a single file)."""
    found: dict[str, InputFile] = {}
    fs, path = filesystem(uri, storage_options)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    prefix = "" if is_local(fs) else f"{protocol}://"
    if any(c in path for c in _GLOB_CHARS):
        root = _static_prefix(path).rsplit("/", 1)[0] or "/"
        if is_local(fs) and not fs.exists(root):  # object stores: glob itself raises 403/404
            raise SpecError(f"source.uri: no such file or folder: {root} (in {uri})")
        infos = fs.glob(path, detail=True)
    elif fs.isdir(path):
        infos = fs.find(path, detail=True)
    elif fs.exists(path):
        infos = {path: fs.info(path)}
    else:
        raise SpecError(f"source.uri: no such file or folder: {uri}")
    base = _static_prefix(path)
    for name, info in infos.items():
        if info.get("type") == "directory" or _is_hidden(name[len(base):]):
            continue
        full = prefix + name
        found[full] = InputFile(full, int(info.get("size") or 0), _version(info))
    return found


def _static_prefix(path: str) -> str:
    """The part of a path before its first glob character (the listing root)."""
    cut = min((path.index(c) for c in _GLOB_CHARS if c in path), default=len(path))
    return path[:cut]


def _is_hidden(path: str) -> bool:
    """Skip temporary and hidden files (.tmp, .git) and tokenmill's own output folders."""
    parts = path.split("/")
    return any(p.startswith(".") or p in (layout.LEDGER_DIR, layout.ERROR_DIR) for p in parts) or layout.TMP_MARK in parts[-1]


def _unit_id(refs: Iterable[InputRef]) -> str:
    key = "\n".join(f"{r.uri}|{r.start}|{r.end}" for r in refs)
    return "u-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def _make_unit(refs: list[InputRef]) -> WorkUnit:
    fp = hashlib.sha256("\n".join(f"{r.uri}|{r.size}|{r.version}" for r in refs).encode()).hexdigest()[:20]
    n_bytes = sum((r.end if r.end is not None else r.size) - r.start for r in refs)
    return WorkUnit(_unit_id(refs), tuple(refs), fp, n_bytes)


def _ends_unit(f: InputFile, unit_bytes: int) -> bool:
    """Content-defined boundary: P(boundary) = size / unit_bytes, a pure function of the file."""
    h = int.from_bytes(hashlib.blake2b(f.uri.encode(), digest_size=8).digest(), "big") / 2**64
    return h < f.size / unit_bytes


def group_small_files(files: list[InputFile], unit_bytes: int) -> Iterator[list[InputRef]]:
    """Group files into units of about unit_bytes with boundaries that survive insertions."""
    group: list[InputRef] = []
    total = 0
    for f in files:
        group.append(InputRef(f.uri, f.size, f.version))
        total += f.size
        if _ends_unit(f, unit_bytes) or total >= _MAX_UNIT_FACTOR * unit_bytes:
            yield group
            group, total = [], 0
    if group:
        yield group


def split_by_bytes(f: InputFile, unit_bytes: int) -> Iterator[list[InputRef]]:
    """Byte ranges of a large line-oriented file; a unit owns the lines that start in it."""
    for start in range(0, f.size, unit_bytes):
        yield [InputRef(f.uri, f.size, f.version, start, min(start + unit_bytes, f.size))]


def split_parquet(f: InputFile, unit_bytes: int, storage_options: dict[str, Any] | None) -> Iterator[list[InputRef]]:
    """Ranges of row groups of about unit_bytes (compressed) each."""
    import pyarrow.parquet as pq
    fs, path = filesystem(f.uri, storage_options)
    try:
        with fs.open(path, "rb") as handle:
            meta = pq.ParquetFile(handle).metadata
    except Exception as exc:  # noqa: BLE001 - any footer failure makes the file one (failing) unit
        raise SpecError(f"source.uri: {f.uri} is not a readable parquet file: {exc}") from None
    start, total = 0, 0
    for g in range(meta.num_row_groups):
        total += meta.row_group(g).total_byte_size
        if total >= unit_bytes:
            yield [InputRef(f.uri, f.size, f.version, start, g + 1)]
            start, total = g + 1, 0
    if start < meta.num_row_groups or meta.num_row_groups == 0:
        yield [InputRef(f.uri, f.size, f.version, start, meta.num_row_groups)]


def cut_units(spec: JobSpec, files: list[InputFile]) -> list[WorkUnit]:
    """The job's work units, sorted by their first input (the index order)."""
    unit_bytes = spec.source.unit_bytes
    fmt = spec.source.format
    groups: list[list[InputRef]] = []
    small: list[InputFile] = []
    for f in files:
        if fmt == "parquet":
            groups.extend(split_parquet(f, unit_bytes, spec.source.storage_options))
        elif fmt in ("lines", "jsonl") and f.size > unit_bytes:
            groups.extend(split_by_bytes(f, unit_bytes))
        else:
            small.append(f)
    groups.extend(group_small_files(small, unit_bytes))
    units = [_make_unit(g) for g in groups]
    return sorted(units, key=lambda u: (u.inputs[0].uri, u.inputs[0].start))


def make_plan(spec: JobSpec) -> list[WorkUnit]:
    """List the spec's inputs and cut them into units."""
    return cut_units(spec, list_inputs(spec.source.uris, spec.source.storage_options))


def plan_summary(units: list[WorkUnit]) -> str:
    """One JSON line per unit, for `tokenmill plan`."""
    return "\n".join(json.dumps(u.to_json(), sort_keys=True) for u in units)
