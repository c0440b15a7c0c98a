"""fsspec access with atomic writes: rename on local disks, one complete PUT on object stores."""
from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from pipeline.dataset.layout import temporary_name

_LOCAL_PROTOCOLS = ("file", "local")


def filesystem(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for a URI and the path inside it (AWS_* variables apply to s3://)."""
    return url_to_fs(uri, **(storage_options or {}))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in _LOCAL_PROTOCOLS


class Storage:
    """A folder on any fsspec filesystem, addressed by paths relative to its root."""

    def __init__(self, uri: str, storage_options: dict[str, Any] | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.storage_options = storage_options or {}
        self.fs, self.root = filesystem(self.uri, self.storage_options)
        self.root = self.root.rstrip("/")
        self.local = is_local(self.fs)

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def write_atomic(self, rel: str, data: bytes) -> None:
        """Make `data` visible at `rel` all at once, or not at all."""
        target = self.path(rel)
        if self.local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = temporary_name(target, uuid.uuid4().hex)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        else:
            self.fs.pipe_file(target, data)

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self.path(rel))

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def size(self, rel: str) -> int | None:
        try:
            return int(self.fs.size(self.path(rel)))
        except FileNotFoundError:
            return None

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) directly under `rel`; empty when the folder does not exist."""
        try:
            entries = self.fs.ls(self.path(rel), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(os.path.basename(e.rstrip("/")) for e in entries)

    def list_detail(self, rel: str) -> dict[str, dict[str, Any]]:
        """Entries directly under `rel`: name -> {"size", "type" ("file", "directory", ...)}; {} when absent."""
        folder = self.path(rel).rstrip("/")
        try:
            infos = self.fs.ls(folder, detail=True, refresh=True)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        out = {}
        for info in infos:
            name = info["name"].rstrip("/")
            if name.startswith(folder + "/"):  # `ls` of a file is the file itself
                out[name.rsplit("/", 1)[-1]] = {"size": int(info.get("size") or 0), "type": info.get("type", "file")}
        return out

    def remove(self, rel: str) -> None:
        try:
            self.fs.rm_file(self.path(rel))
        except FileNotFoundError:
            pass


def local_file(uri: str) -> Path:
    """A local path for a (tokenizer) file that may live on object storage; remote ones are cached by URI."""
    if "://" not in uri or uri.startswith("file://"):
        return Path(uri.removeprefix("file://")).expanduser()
    target = Path(tempfile.gettempdir()) / "tokenmill-tokenizers" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    target.mkdir(parents=True, exist_ok=True)
    local = target / Path(uri).name
    with fsspec.open(uri, "rb") as f:
        local.write_bytes(f.read())
    return local

