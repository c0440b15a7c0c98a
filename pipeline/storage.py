"""fsspec access with atomic writes: rename on local disks, one complete PUT on object stores."""
from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs

from pipeline.dataset.layout import temporary_name
from pipeline.direct_write import DIRECT_MIN_BYTES, write_direct

_LOCAL_PROTOCOLS = ("file", "local")
# the errno values of storage I/O worth retrying; ENOENT, EACCES, EISDIR... are answers, not accidents
_TRANSIENT_ERRNO = {errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ECONNRESET,
                    errno.ECONNABORTED, errno.ECONNREFUSED, errno.EPIPE, errno.ENETDOWN, errno.ENETUNREACH,
                    errno.EHOSTUNREACH}
# connection errors of the object-store clients (aiohttp, botocore), matched on the class and its bases
_CLIENT_TRANSIENT = {"ClientConnectionError", "ClientPayloadError", "ServerTimeoutError", "EndpointConnectionError",
                     "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError", "IncompleteReadError",
                     "ResponseStreamingError"}
# aiohttp raises ClientResponseError from this when a reply cannot be parsed (a garbled status line, broken
# headers): the connection carried noise, not an answer, so it is worth a retry like a reset
_UNPARSABLE = "HttpProcessingError"
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
# a timeout has already waited its bounded time (S3_TIMEOUTS): retrying it again here would multiply the wait
_WAITED = {"ReadTimeoutError", "ConnectTimeoutError", "ServerTimeoutError"}
STORAGE_ATTEMPTS = 5


def is_transient(exc: BaseException) -> bool:
    """Whether a storage error may pass on a retry, by its type (and errno), never its message.

    A client's wrapper of an error it did not expect (botocore's HTTPClientError, "An HTTP Client raised an
    unhandled exception", around e.g. a connection reset while sending) is judged by the error it wraps.
    """
    if isinstance(exc, _PERMANENT):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if {c.__name__ for c in type(exc).__mro__} & _CLIENT_TRANSIENT:
        return True
    if isinstance(exc, OSError) and (exc.errno in _TRANSIENT_ERRNO or (exc.errno is None and type(exc) is OSError)):
        return True
    if _UNPARSABLE in {c.__name__ for c in type(exc.__cause__).__mro__}:  # a reply that was not HTTP at all
        return True
    wrapped = getattr(exc, "kwargs", None)
    inner = wrapped.get("error") if isinstance(wrapped, dict) else None
    return isinstance(inner, BaseException) and inner is not exc and is_transient(inner)


def retried(call, *args, **kwargs):
    """One storage call, retried with backoff while it fails transiently (a reset, a 503 after the client's own
    retries) and has not already waited out a timeout; then the error as it is."""
    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        try:
            return call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - classified right below
            waited = isinstance(exc, TimeoutError) or {c.__name__ for c in type(exc).__mro__} & _WAITED
            if attempt == STORAGE_ATTEMPTS or waited or not is_transient(exc):
                raise
            time.sleep(min(0.25 * 2 ** attempt, 4.0))


# an endpoint that accepts connections and never answers fails in about a minute, naming itself,
# instead of hanging a plan or a unit forever; users override with storage_options.config_kwargs
S3_TIMEOUTS = {"connect_timeout": 5, "read_timeout": 10, "retries": {"max_attempts": 2, "mode": "standard"}}
S3_RETRIES = 2  # s3fs's own retries on top of botocore's: measured ~40 s to a black-holed endpoint


def filesystem(uri: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for a URI and the path inside it (AWS_* variables apply to s3://), with bounded waits."""
    options = dict(storage_options or {})
    if uri.startswith(("s3://", "s3a://")):
        options["config_kwargs"] = {**S3_TIMEOUTS, **options.get("config_kwargs", {})}
    fs, path = url_to_fs(uri, **options)
    if hasattr(fs, "retries") and "retries" not in (storage_options or {}):
        fs.retries = S3_RETRIES  # a class attribute in s3fs, not a constructor option
    return fs, path


def cat_objects(fs: fsspec.AbstractFileSystem, paths: list[str]) -> dict[str, bytes | BaseException]:
    """Each (small) object's bytes, or the error reading it, fetched concurrently with one GET each. s3fs's
    cat first asks each object's size (a HEAD: 2 requests per object, each one more chance of a 503) to decide
    whether to read it in concurrent ranges, which pays only for objects of tens of MB."""
    import inspect
    cat_file = getattr(fs, "_cat_file", None) or fs.cat_file
    one_stream = {"max_concurrency": 1} if "max_concurrency" in inspect.signature(cat_file).parameters else {}
    return fs.cat(paths, on_error="return", **one_stream)


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
        """Make `data` visible at `rel` all at once, or not at all (retried while storage fails transiently)."""
        retried(self._write_once, rel, data)

    def _write_once(self, rel: str, data: bytes) -> None:
        atomic_file(self.fs, self.path(rel)).write_all(data)

    def read_bytes(self, rel: str) -> bytes:
        return retried(self.fs.cat_file, self.path(rel))

    def exists(self, rel: str) -> bool:
        return retried(self.fs.exists, self.path(rel))

    def size(self, rel: str) -> int | None:
        try:
            return int(retried(self.fs.size, self.path(rel)))
        except FileNotFoundError:
            return None

    def modified(self, rel: str) -> float | None:
        """When `rel` last changed, by the storage's own clock (epoch seconds); None if unknown or absent."""
        try:
            info = retried(self.fs.info, self.path(rel))
        except (FileNotFoundError, OSError):
            return None
        value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        return float(value) if isinstance(value, (int, float)) else None

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) directly under `rel`; empty when the folder does not exist."""
        try:
            entries = retried(lambda: self.fs.ls(self.path(rel), detail=False, refresh=True))
        except FileNotFoundError:
            return []
        return sorted(os.path.basename(e.rstrip("/")) for e in entries)

    def list_detail(self, rel: str) -> dict[str, dict[str, Any]]:
        """Entries directly under `rel`: name -> {"size", "type" ("file", "directory", ...)}; {} when absent."""
        folder = self.path(rel).rstrip("/")
        try:
            infos = retried(lambda: self.fs.ls(folder, detail=True, refresh=True))
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
            retried(self.fs.rm_file, self.path(rel))
        except FileNotFoundError:
            pass


class atomic_file:
    """A file that appears at `path` only when complete: a rename of a synced temporary locally,
    one finished upload on object stores (an aborted multipart upload leaves no object)."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        self.fs, self.path, self.local = fs, path, is_local(fs)
        self.tmp = temporary_name(path, uuid.uuid4().hex) if self.local else path

    def write_all(self, data: bytes) -> None:
        """All of `data` at once; a local file of DIRECT_MIN_BYTES or more (a shard) past the page cache, with
        O_DIRECT, where the filesystem takes it (pipeline.direct_write), then renamed like any other."""
        if self.local and len(data) >= DIRECT_MIN_BYTES:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            if write_direct(self.tmp, data):
                os.replace(self.tmp, self.path)
                return
        with self as f:  # write_direct left nothing at self.tmp
            f.write(data)

    def __enter__(self) -> IO[bytes]:
        if self.local:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self.file = open(self.tmp, "wb")
        else:
            self.file = self.fs.open(self.tmp, "wb")
        return self.file

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None and not self.local and hasattr(self.file, "discard"):
            self.file.discard()
            return
        if self.local and exc_type is None:
            self.file.flush()
            os.fsync(self.file.fileno())
        self.file.close()
        if self.local and exc_type is not None:
            os.remove(self.tmp)
        elif self.local:
            os.replace(self.tmp, self.path)


def local_file(uri: str) -> Path:
    """A local path for a (tokenizer) file that may live on object storage; remote ones are cached by URI."""
    if "://" not in uri or uri.startswith("file://"):
        return Path(uri.removeprefix("file://")).expanduser()
    target = Path(tempfile.gettempdir()) / "tokenmill-tokenizers" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    target.mkdir(parents=True, exist_ok=True)
    local = target / Path(uri).name
    fs, path = filesystem(uri)
    local.write_bytes(fs.cat_file(path))
    return local

