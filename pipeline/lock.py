"""The run lease: one run at a time per output folder, and a crashed holder never blocks forever.

The holder writes `_lock` (host, pid, token, heartbeat time) and rewrites it every
HEARTBEAT_S while it runs. Another run refuses while the lease is fresh and takes over a
lease that is stale: not rewritten for LEASE_S as the storage's own modification time shows
(the writer's clock is never trusted, so a heartbeat dated in the future by a skewed clock
does not block anyone), or whose holder process is gone on this host. A failed heartbeat
write is retried; a holder that cannot renew its lease for LEASE_S marks it lost and stops
committing, because another run may have taken the folder over by then.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

from pipeline.dataset.layout import LOCK
from pipeline.errors import OutputError
from pipeline.storage import Storage

log = logging.getLogger(__name__)

LEASE_S = 60.0
HEARTBEAT_S = 10.0


class LeaseLost(OutputError):
    """This run could not renew its lease: it stops before writing more, and says why."""


def lease_age(storage: Storage, info: dict) -> float:
    """Seconds since the lease was last rewritten, by the storage's modification time where it has one."""
    changed = storage.modified(LOCK)
    if changed is None:  # no modification time on this storage: the heartbeat, but never from the future
        changed = min(float(info.get("heartbeat", 0) or 0), time.time())
    return max(0.0, time.time() - changed)


def holder_alive(info: dict, storage: Storage | None = None) -> bool:
    """Whether a lease's holder may still run: a live pid on this host, else a lease renewed within LEASE_S."""
    if info.get("host") == socket.gethostname():
        try:
            os.kill(int(info["pid"]), 0)
        except (ProcessLookupError, ValueError, KeyError, TypeError):
            return False
        except PermissionError:
            return True
        return True
    age = lease_age(storage, info) if storage is not None else time.time() - float(info.get("heartbeat", 0) or 0)
    return age <= LEASE_S


class RunLease:
    """Context manager holding the output folder's lease for one run."""

    def __init__(self, storage: Storage, heartbeat_s: float = HEARTBEAT_S, lease_s: float = LEASE_S) -> None:
        self.storage = storage
        self.heartbeat_s, self.lease_s = heartbeat_s, lease_s
        self.token = uuid.uuid4().hex
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "heartbeat": time.time()}
        self.storage.write_atomic(LOCK, json.dumps(info).encode())

    def current(self) -> dict | None:
        try:
            info = json.loads(self.storage.read_bytes(LOCK))
        except (FileNotFoundError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def __enter__(self) -> "RunLease":
        info = self.current()
        if info and info.get("token") != self.token and holder_alive(info, self.storage):
            raise OutputError(f"another run holds {self.storage.uri} (pid {info.get('pid')} on {info.get('host')}); "
                              f"wait for it to finish, or remove {LOCK} if that run is gone")
        self._write()
        time.sleep(0.05)
        if (self.current() or {}).get("token") != self.token:
            raise OutputError(f"another run took {self.storage.uri} at the same moment; try again")
        self._thread = threading.Thread(target=self._beat, name="tokenmill-lease", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.heartbeat_s):
            try:
                if (self.current() or {}).get("token") not in (self.token, None):
                    self.lost = f"another run took over the lease on {self.storage.uri}"
                    return
                self._write()
                renewed = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - any storage failure: retry until the lease would lapse
                late = time.monotonic() - renewed
                log.warning("could not renew the lease on %s (%s: %s); retrying", self.storage.uri,
                            type(exc).__name__, exc)
                if late > self.lease_s:
                    self.lost = (f"could not renew the lease on {self.storage.uri} for {late:.0f} s "
                                 f"({type(exc).__name__}: {exc}); another run may have taken it over")
                    return

    def check(self) -> None:
        """Raise LeaseLost when this run no longer holds the folder (call before each write that matters)."""
        if self.lost:
            raise LeaseLost(f"{self.lost}; stopped without writing more. Rerun when the storage works again")

    def __exit__(self, *exc) -> None:
        self._stop.set()
        try:
            if (self.current() or {}).get("token") == self.token:
                self.storage.remove(LOCK)
        except OSError as err:  # the next run takes a stale lease over
            log.warning("could not remove the lease %s: %s", LOCK, err)
