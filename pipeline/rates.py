"""Throughput arithmetic, once: rates over a span, and the span the units of a run were busy."""
from __future__ import annotations

from typing import Iterable


def rate(amount: float, seconds: float) -> float | None:
    """amount per second, or None over an empty span (nothing to divide by)."""
    return amount / seconds if seconds > 0 else None


def mb_per_s(n_bytes: float, seconds: float) -> float:
    """Decimal MB per second, 0.0 over an empty span (unrounded: whoever shows it rounds, with humanize.sig3)."""
    value = rate(n_bytes, seconds)
    return value / 1e6 if value is not None else 0.0


def busy_span(entries: Iterable) -> float:
    """Seconds from the first unit's start to the last unit's commit (ledger entries' run times)."""
    runs = [e.run for e in entries]
    if not runs:
        return 0.0
    return max(r.finished for r in runs) - min(r.started for r in runs)
