"""The run lease: one run at a time per output folder, and a crashed holder never blocks forever.

The holder writes `_lock` (host, pid, token, heartbeat time) and refreshes it while it runs.
Another run refuses while the lease is fresh; a lease whose heartbeat is older than
`LEASE_S`, or whose holder process is gone on this host, is taken over.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from pipeline.dataset.layout import LOCK
from pipeline.errors import OutputError
from pipeline.storage import Storage

LEASE_S = 60.0
HEARTBEAT_S = 10.0


def holder_alive(info: dict) -> bool:
    """Whether a lease's holder may still run: a fresh heartbeat and, on this host, a live pid."""
    if time.time() - float(info.get("heartbeat", 0)) > LEASE_S:
        return False
    if info.get("host") == socket.gethostname():
        try:
            os.kill(int(info["pid"]), 0)
        except (ProcessLookupError, ValueError, KeyError):
            return False
        except PermissionError:
            return True
    return True


class RunLease:
    """Context manager holding the output folder's lease for one run."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token, "heartbeat": time.time()}
        self.storage.write_atomic(LOCK, json.dumps(info).encode())

    def current(self) -> dict | None:
        try:
            return json.loads(self.storage.read_bytes(LOCK))
        except (FileNotFoundError, ValueError):
            return None

    def __enter__(self) -> "RunLease":
        info = self.current()
        if info and info.get("token") != self.token and holder_alive(info):
            raise OutputError(f"another run holds {self.storage.uri} (pid {info.get('pid')} on {info.get('host')}); "
                              f"wait for it to finish, or remove {LOCK} if that run is gone")
        self._write()
        time.sleep(0.05)
        if (self.current() or {}).get("token") != self.token:
            raise OutputError(f"another run took {self.storage.uri} at the same moment; try again")
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._write()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if (self.current() or {}).get("token") == self.token:
            self.storage.remove(LOCK)
