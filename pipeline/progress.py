"""Live progress (units, documents, tokens, MB/s) on the console, and as structured log lines."""
from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from pipeline.rates import mb_per_s

if TYPE_CHECKING:
    from pipeline.dataset.records import LedgerEntry

log = logging.getLogger("tokenmill.progress")


class Progress:
    """Counts committed units; draws a one-line bar on a terminal, logs every few seconds otherwise."""

    def __init__(self, total_units: int, stream=None, interval_s: float = 2.0) -> None:
        self.total = total_units
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.started = time.time()
        self.first_commit: float | None = None
        self.units = self.samples = self.tokens = self.bytes = self.errors = self.empty = self.retries = 0
        self._last = 0.0
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def commit(self, entry: "LedgerEntry") -> None:
        self.first_commit = self.first_commit or time.time()
        self.units += 1
        self.samples += entry.n_samples
        self.tokens += entry.n_tokens
        self.bytes += entry.n_bytes
        self.errors += entry.n_errors
        self.empty += entry.n_empty
        self.draw()

    def retry(self, unit: Any, message: str) -> None:
        self.retries += 1
        self.draw(force=True)

    def mb_s(self) -> float:
        return mb_per_s(self.bytes, time.time() - self.started)

    def line(self) -> str:
        return (f"units {self.units}/{self.total} | docs {self.samples:,} | tokens {self.tokens:,} | "
                f"{self.mb_s():.2f} MB/s | quarantined {self.errors} | empty {self.empty} | retries {self.retries}")

    def draw(self, force: bool = False) -> None:
        now = time.time()
        done = self.units == self.total
        if self._tty:
            self.stream.write("\r" + self.line() + ("\n" if done else ""))
            self.stream.flush()
        elif force or done or now - self._last >= self.interval_s:
            log.info(self.line(), extra={"units": self.units, "total_units": self.total, "samples": self.samples,
                                         "tokens": self.tokens, "mb_s": round(self.mb_s(), 3)})
            self._last = now
