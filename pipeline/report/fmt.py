"""How the report's numbers and tokens read: counts exact, measures to 3 significant digits.

A count (samples, tokens, bytes, units) is an int and prints whole with separators; every
measure (seconds, rates, ratios, shares, sizes) prints with 3 significant digits, trailing
zeros kept, so "24.9 MB/s", "2.10" and "0.500%" line up in one column; from 1,000 up a
measure prints whole ("15,006 tokens/s"). `sig` and `plural` are pipeline.humanize's, which
the CLI prints with, so a figure both show reads the same in both. Token text is shown
with whitespace and control characters made visible: a space is ␣, a newline \\n, a byte that
is not valid UTF-8 or a control character <0xNN>. The space mark is U+2423 (␣), not U+2420
(␠): DejaVu and Liberation, the fonts a Debian desktop draws with, have no ␠, so it showed as
the very empty box it was meant to replace.
"""
from __future__ import annotations

import time
import unicodedata
from typing import Any

from pipeline.humanize import plural, sig3

__all__ = ["mb_s", "num", "pct", "plural", "seconds", "sig", "size", "visible", "when"]

sig = sig3  # the CLI's own rule, so a number both print reads the same

ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "␣", "\\": "\\\\"}
HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}  # categories a browser draws as nothing or a box


def num(value: Any) -> str:
    """A count whole ('12,345'), a measure to 3 significant digits ('2.10'), '–' for none."""
    if value is None:
        return "–"
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return sig(float(value))


def size(n: Any) -> str:
    """Bytes in B, KiB, MiB, GiB or TiB; whole below 1 KiB, else 3 significant digits."""
    if n is None:
        return "–"
    if abs(n) < 1024:
        return f"{int(n):,} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1000 or unit == "TiB":  # 1000-1023 KiB reads better as 0.977 MiB than 1,000 KiB
            return f"{sig(value)} {unit}"
    raise AssertionError("unreachable")


def pct(share: Any) -> str:
    """A share (0.302) as a percentage with 3 significant digits ('30.2%')."""
    return "–" if share is None else f"{sig(100 * share)}%"


def mb_s(bytes_per_second: Any) -> str:
    """Decimal MB per second (the unit the CLI prints), 3 significant digits."""
    return "–" if bytes_per_second is None else sig(bytes_per_second / 1e6)


def seconds(s: Any) -> str:
    """Seconds, 3 significant digits, with the unit."""
    return "–" if s is None else f"{sig(s)} s"


def when(t: float | None) -> str:
    """A unix time as UTC date and time."""
    return "–" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def visible(text: str) -> str:
    """Token text with whitespace and control characters shown: ␣, \\n, \\t, <0x00>.

    Lone surrogates U+DC80-U+DCFF stand for bytes that are not valid UTF-8 (Python's
    surrogateescape), so a byte-level token that is half a character shows its byte.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if ch in ESCAPES:
            out.append(ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"<0x{code - 0xDC00:02X}>")
        elif unicodedata.category(ch) in HIDDEN:
            out.append("".join(f"<0x{b:02X}>" for b in ch.encode("utf-8", "surrogatepass")))
        else:
            out.append(ch)
    return "".join(out) or "(empty)"
