"""The honest listing of a source: every entry is either an input to read or a problem with its reason.

Only regular files are read. A FIFO, socket or device, a folder that cannot be listed, a
dangling symlink, a name that is not UTF-8, a hidden entry, or a symlink (unless
`source.follow_symlinks`, and then never one that leads outside the source root) is listed
as a *problem*: planning puts it into a unit like any input, and its reader turns it into a
quarantine record, so the summary and `_errors/` count it and nothing is skipped in silence.
Local folders are walked with `os.scandir` (one `lstat` per entry, as fsspec's `find` does);
object stores are listed with fsspec.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from typing import Any, Iterable

from fsspec.utils import glob_translate

from pipeline.errors import SpecError
from pipeline.sources.inputs import file_kind, local_version
from pipeline.storage import filesystem, is_local, retried

GLOB_CHARS = "*?["
HIDDEN = "hidden (its name starts with '.'); not read"


@dataclass(frozen=True)
class InputFile:
    """One listed entry and its fingerprint fields; `problem` says why it cannot be read (else "")."""

    uri: str
    size: int
    version: str  # etag on object stores, mtime_ns on local disks
    problem: str = ""

    @property
    def fingerprint(self) -> str:
        return f"{self.size}:{self.version}"


def problem_entry(uri: str, reason: str) -> InputFile:
    """A listed entry that is not read; its version follows the reason, so a new reason redoes its unit."""
    return InputFile(printable(uri), 0, "!" + hashlib.sha256(reason.encode()).hexdigest()[:12], reason)


def printable(text: str) -> str:
    """A name as valid UTF-8 text: bytes that are not UTF-8 (surrogate escapes) shown as \\xNN."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def version_of(info: dict[str, Any]) -> str:
    """The version an fsspec info dict gives: etag (or hash), else the modification time."""
    for key in ("ETag", "etag", "md5Hash", "crc32c"):
        if info.get(key):
            return str(info[key]).strip('"')
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        if info.get(key) is not None:
            value = info[key]
            return str(int(value * 1e9)) if isinstance(value, float) else str(value)
    return ""


def list_inputs(uris: Iterable[str], storage_options: dict[str, Any] | None = None,
                follow_symlinks: bool = False) -> list[InputFile]:
    """Every entry under the URIs (globs, folders or single files), sorted by URI."""
    uris = list(uris)
    found: dict[str, InputFile] = {}
    for uri in uris:
        try:
            found.update(_list_one(uri, storage_options, follow_symlinks))
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise SpecError(f"source.uri: no such file or folder: {uri}") from None
            raise SpecError(f"source.uri: cannot list {uri}: {type(exc).__name__}: {exc}") from None
    readable = [f for f in found.values() if not f.problem]
    if not readable:
        if found:
            first = found[min(found)]
            raise SpecError(f"source.uri: nothing readable in {uris}: {len(found)} entries set aside, "
                            f"e.g. {first.uri}: {first.problem}")
        raise SpecError(f"source.uri: nothing matches {uris}; check the path or glob")
    return [found[k] for k in sorted(found)]


def static_prefix(path: str) -> str:
    """The part of a path before its first glob character (the listing root)."""
    cut = min((path.index(c) for c in GLOB_CHARS if c in path), default=len(path))
    return path[:cut]


def source_root(path: str) -> str:
    """The folder a (glob) path lists below."""
    if not any(c in path for c in GLOB_CHARS):
        return path.rstrip("/") or "/"
    return static_prefix(path).rsplit("/", 1)[0] or "/"


def corpus_root(uris: Iterable[str]) -> str:
    """The folder every source URI lists below (their common folder, by whole path components).

    Sample ids, unit ids and unit boundaries are names relative to it, so the same corpus under another
    mount point, folder or object-store prefix gives the same ids, units and shard bytes."""
    roots = [source_root(u.removeprefix("file://")) for u in uris]
    if len(roots) == 1:
        return roots[0]
    common = os.path.commonprefix([r.split("/") for r in roots])
    return "/".join(common) or "/"


def relative_name(uri: str, root: str) -> str:
    """An input's name below the corpus root: `json/decoder.py`; the file's own name when the root is that
    file (a source URI naming one file); the URI itself when it is not below the root."""
    uri = uri.removeprefix("file://")
    if uri == root:
        return uri.rsplit("/", 1)[-1]
    head = root.rstrip("/") + "/"
    return uri[len(head):].lstrip("/") if uri.startswith(head) else uri


def _list_one(uri: str, storage_options: dict[str, Any] | None, follow_symlinks: bool) -> dict[str, InputFile]:
    fs, path = filesystem(uri, storage_options)
    if is_local(fs):
        return _LocalWalk(path, follow_symlinks).run(uri)
    return _list_remote(fs, path, uri)


def _list_remote(fs: Any, path: str, uri: str) -> dict[str, InputFile]:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if any(c in path for c in GLOB_CHARS):
        infos = retried(fs.glob, path, detail=True)  # a missing bucket or a 403 raises here
    elif retried(fs.isdir, path):
        infos = retried(fs.find, path, detail=True)
    elif retried(fs.exists, path):
        infos = {path: retried(fs.info, path)}
    else:
        raise SpecError(f"source.uri: no such file or folder: {uri}")
    base = static_prefix(path)
    found: dict[str, InputFile] = {}
    for name, info in infos.items():
        if info.get("type") == "directory":
            continue
        full = f"{protocol}://{name}"
        hidden = _hidden_prefix(name, base)
        if hidden is not None:  # one record per hidden folder, not one per object under it
            found.setdefault(f"{protocol}://{hidden}", problem_entry(f"{protocol}://{hidden}", HIDDEN))
        elif info.get("type", "file") != "file":
            found[full] = problem_entry(full, f"not a regular file (type {info.get('type')!r})")
        else:
            found[full] = InputFile(full, int(info.get("size") or 0), version_of(info))
    return found


def _hidden_prefix(name: str, base: str) -> str | None:
    """The path up to the first hidden component below base, or None."""
    head, rest = name[:len(base)], name[len(base):]
    parts = rest.split("/")
    for i, part in enumerate(parts):
        if part.startswith("."):
            return head + "/".join(parts[:i + 1])
    return None


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _LocalWalk:
    """A walk of a local folder (or of the root of a glob) that lists every entry it meets once."""

    def __init__(self, path: str, follow_symlinks: bool) -> None:
        self.root = source_root(path)
        self.real_root = os.path.realpath(self.root)
        self.follow = follow_symlinks
        self.glob = any(c in path for c in GLOB_CHARS)
        self.pattern = re.compile(glob_translate(path)) if self.glob else None
        # without `**`, matches sit at a fixed depth below the root: deeper folders are not walked
        self.depth = None if not self.glob or "**" in path else path[len(self.root):].strip("/").count("/") + 1
        self.found: dict[str, InputFile] = {}
        self.seen: set[tuple[int, int]] = set()

    def run(self, uri: str) -> dict[str, InputFile]:
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            raise SpecError(f"source.uri: no such file or folder: {self.root} (in {uri})") from None
        if not stat.S_ISDIR(st.st_mode):  # a single file named by the URI (followed if it is a link)
            if stat.S_ISREG(st.st_mode):
                return {self.root: InputFile(self.root, st.st_size, local_version(st))}
            return {self.root: problem_entry(self.root, f"not a regular file ({file_kind(st.st_mode)})")}
        self.seen.add((st.st_dev, st.st_ino))
        stack = [(self.root, 0)]
        while stack:
            folder, level = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                if folder == self.root:
                    raise
                self._problem(folder, f"cannot list folder: {type(exc).__name__}: {exc.strerror}", level - 1, True)
                continue
            for entry in entries:
                self._entry(entry, level + 1, stack)
        return self.found

    def _walkable(self, level: int) -> bool:
        """Whether a folder at this depth may hold matches."""
        return self.depth is None or level < self.depth

    def _matches(self, uri: str) -> bool:
        return self.pattern is None or bool(self.pattern.match(uri))

    def _problem(self, uri: str, reason: str, level: int, is_dir: bool) -> None:
        if (is_dir and self._walkable(level)) or (not is_dir and self._matches(uri)):
            entry = problem_entry(uri, reason)
            self.found[entry.uri] = entry

    def _entry(self, entry: os.DirEntry, level: int, stack: list) -> None:
        uri = entry.path
        is_dir = entry.is_dir(follow_symlinks=False)
        if not _is_utf8(entry.name):
            self._problem(uri, "name is not valid UTF-8; not read (rename it)", level, is_dir)
            return
        if entry.name.startswith("."):
            self._problem(uri, HIDDEN, level, is_dir)
            return
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            self._problem(uri, f"cannot stat: {type(exc).__name__}: {exc.strerror}", level, False)
            return
        if stat.S_ISLNK(st.st_mode):
            self._link(uri, level, stack)
        else:
            self._add(uri, st, level, stack)

    def _add(self, uri: str, st: os.stat_result, level: int, stack: list) -> None:
        if stat.S_ISDIR(st.st_mode):
            if not self._walkable(level):
                return
            if (st.st_dev, st.st_ino) in self.seen:
                self._problem(uri, "folder already listed through another path (a symbolic link loop?)", level, True)
                return
            self.seen.add((st.st_dev, st.st_ino))
            stack.append((uri, level))
        elif stat.S_ISREG(st.st_mode):
            if self._matches(uri):
                self.found[uri] = InputFile(uri, st.st_size, local_version(st))
        else:
            self._problem(uri, f"not a regular file ({file_kind(st.st_mode)})", level, False)

    def _link(self, uri: str, level: int, stack: list) -> None:
        try:
            target = printable(os.readlink(uri))
        except OSError as exc:
            self._problem(uri, f"cannot read symbolic link: {type(exc).__name__}: {exc.strerror}", level, False)
            return
        try:
            st = os.stat(uri)
        except OSError:
            self._problem(uri, f"dangling symbolic link (to {target!r})", level, False)
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        if not self.follow:
            self._problem(uri, f"symbolic link to {target!r}; not followed "
                          "(set source.follow_symlinks: true to read it)", level, is_dir)
            return
        real = os.path.realpath(uri)
        if not _inside(real, self.real_root):
            self._problem(uri, f"symbolic link to {printable(real)!r}, outside the source root "
                          f"{printable(self.root)!r}; not read", level, is_dir)
            return
        self._add(uri, st, level, stack)
