"""`format: webdataset`: tar shards (plain or compressed) whose members are grouped by key.

WebDataset's convention: `dir/key.ext` members that share a key, stored next to each
other, form one sample; the key is everything before the first dot of the base name. The
member matching the source's modality (`.jpg`, `.flac`, `.mp4`, ...) is the payload; small
`.json`/`.txt`/`.cls` members go to `meta`. Sample ids are `<tar uri>/<key>`, and the
payload member's name is kept in `member`.

Member names are untrusted: a name that is absolute, climbs with `..`, holds a backslash or
NUL, is not UTF-8, or a member that is a link or device, quarantines its whole sample.
Nothing from a tar is ever written to disk by a path from the tar. limits.max_bytes bounds
a sample (its members together), checked on the member headers before any data is read, so
a small .tar.gz of huge members costs no memory. Tars are read as a stream, so a remote
shard is never downloaded whole and a truncated one still yields its complete samples.
"""
from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field
from typing import Any, Iterator

from pipeline.errors import Quarantined
from pipeline.plan import InputRef, WorkUnit
from pipeline.sources import RawRecord, read_inputs
from pipeline.sources.inputs import open_input
from pipeline.sources.listing import printable
from pipeline.spec import SourceSpec

PAYLOAD_EXTS: dict[str, tuple[str, ...]] = {
    "image": ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"),
    "audio": ("flac", "wav", "mp3", "ogg", "opus", "m4a", "aac"),
    "video": ("mp4", "webm", "mkv", "mov", "avi"),
    "text": ("txt", "text", "md"),
    "code": ("py", "c", "h", "cpp", "js", "ts", "go", "rs", "java", "txt"),
    "binary": ("bin", "exe", "so", "elf", "dll", "o"),
}
META_EXTS = ("json", "txt", "cls")
_META_MAX = 4096


def split_name(name: str) -> tuple[str, str]:
    """('dir/key', 'ext.more') as WebDataset splits a member name (at the base name's first dot)."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why a member may not be used (absolute path, `..`, link, device, not UTF-8, ...), or None."""
    name = member.name
    if printable(name) != name:
        return f"member name {printable(name)!r} is not valid UTF-8"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"unsafe member path {name!r}: absolute"
    if "\\" in name or "\x00" in name:
        return f"unsafe member path {name!r}: backslash or NUL"
    if ".." in name.split("/"):
        return f"unsafe member path {name!r}: climbs out with '..'"
    if member.issym() or member.islnk():
        return f"unsafe member {name!r}: a link to {member.linkname!r}"
    if not member.isfile():
        return f"unsafe member {name!r}: not a regular file"
    return None


@dataclass
class _Sample:
    key: str
    members: dict[str, bytes] = field(default_factory=dict)  # ext -> data
    names: dict[str, str] = field(default_factory=dict)      # ext -> member name
    problem: tuple[str, str] | None = None                   # (member, reason)
    n_bytes: int = 0                                         # members read so far


def _meta(sample: _Sample, payload_ext: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"member": sample.names[payload_ext]}
    for ext, data in sample.members.items():
        last = ext.rsplit(".", 1)[-1].lower()
        if ext == payload_ext or last not in META_EXTS or len(data) > _META_MAX:
            continue
        try:
            value = json.loads(data) if last == "json" else data.decode("utf-8").strip()
        except ValueError:
            continue
        if isinstance(value, dict):
            meta.update({k: v for k, v in value.items() if isinstance(v, (str, int, float, bool)) and len(str(v)) <= 256})
        elif isinstance(value, str):
            meta[last] = value
    return meta


def _finish(uri: str, sample: _Sample, modality: str) -> RawRecord | Quarantined:
    if sample.problem:
        return Quarantined(uri, printable(sample.problem[0]), sample.problem[1], "read")
    wanted = PAYLOAD_EXTS.get(modality, ())
    exts = [e for e in sample.members if e.rsplit(".", 1)[-1].lower() in wanted]
    if not exts:
        others = [e for e in sample.members if e.rsplit(".", 1)[-1].lower() not in META_EXTS]
        exts = others if modality in ("binary", "text", "code") and len(others) == 1 else []
    if not exts:
        names = ", ".join(sorted(sample.names.values()))
        return Quarantined(uri, printable(sample.key), f"sample has no {modality} member (members: {names})", "read")
    data = sample.members[exts[0]]
    return RawRecord(f"{uri}/{sample.key}", uri, data, len(data), member=sample.names[exts[0]],
                     meta=_meta(sample, exts[0]))


def _add(tar: tarfile.TarFile, member: tarfile.TarInfo, sample: _Sample, max_bytes: int) -> None:
    """Read one member into its sample, or mark the sample bad (its data is then never read)."""
    if sample.problem:
        return
    reason = unsafe_reason(member)
    if reason is None and sample.n_bytes + member.size > max_bytes:
        reason = (f"sample is {sample.n_bytes + member.size} bytes or more (member {member.name!r}: {member.size}), "
                  f"over limits.max_bytes={max_bytes}")
    if reason is not None:
        sample.problem = (member.name, reason)
        sample.members.clear()  # what was read of a bad sample is let go at once
        return
    _, ext = split_name(member.name)
    handle = tar.extractfile(member)
    sample.members[ext] = handle.read() if handle else b""
    sample.names[ext] = member.name
    sample.n_bytes += member.size


def read_tar(ref: InputRef, source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    """The samples of one tar, in order; a corrupt or cut tar ends with a quarantine entry."""
    uri = ref.uri
    sample: _Sample | None = None
    last = ""
    with open_input(ref, source) as f:
        try:
            with tarfile.open(fileobj=f, mode="r|*") as tar:
                for member in tar:
                    if member.isdir():
                        continue
                    key, _ = split_name(member.name)
                    if sample is not None and key != sample.key:
                        yield _finish(uri, sample, source.modality)
                        sample = None
                    sample = sample or _Sample(key)
                    _add(tar, member, sample, source.limits.max_bytes)
                    last = member.name
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            where = f"after member {printable(last)!r}" if last else "at the start"
            yield Quarantined(uri, printable(sample.key) if sample else "", f"corrupt or truncated tar {where}: {exc}",
                              "read")
            return
    if sample is not None:
        yield _finish(uri, sample, source.modality)


def read_webdataset(unit: WorkUnit, source: SourceSpec) -> Iterator[RawRecord | Quarantined]:
    """Every sample of every tar shard in the unit."""
    return read_inputs(unit.inputs, lambda ref: read_tar(ref, source), "tar")
