"""Numbers as people read them: plurals that agree, and three significant digits."""
from __future__ import annotations

import math


def plural(n: int, noun: str, many: str | None = None) -> str:
    """`1 shard`, `2 shards`, `1,758 samples` (thousands separated)."""
    word = noun if n == 1 else (many or f"{noun}s")
    return f"{n:,} {word}"


def sig3(x: float) -> str:
    """Three significant digits (`24.9`, `2.11`, `0.00312`); whole numbers from 1,000 up (`1,234`)."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    if abs(x) >= 999.5:
        return f"{round(x):,}"
    rounded = float(f"{x:.3g}")
    digits = max(0, 2 - int(math.floor(math.log10(abs(rounded)))))
    return f"{rounded:.{digits}f}"
