"""The names of Python source, compiled (numba, cached on disk): spans.py's regular expression, by hand.

`python_names(data)` gives exactly the identifier ranges that `spans._PYTHON.finditer` gives (keywords
excluded) on UTF-8 source, which are tokenize's NAME tokens on the standard library (tested). At
each position it tries what the expression tries, in the same order: a name, unless a string prefix and
a quote come next; a `#` comment; a triple-quoted string, then a one-line string, each after an
optional prefix (the one prefix followed by a quote); a number by tokenize's own pattern. When nothing
matches, it moves one byte on, as `finditer` does. Bytes of non-ASCII characters count as name bytes
here. In strings and comments that changes nothing: they are neither quotes, backslashes nor line ends.
Anywhere else they are part of a name, and then the expression, whose `\\w` is Unicode's, decides:
python_names returns None for source with a name that holds a non-ASCII byte.

On the 139 MB of the standard library's ASCII sources, the expression and its matches took 7.1 s, this
took 1.0 s (docs/benchmarks.md, Stages).
"""
from __future__ import annotations

import keyword

import numba
import numpy as np

_KW_LEN = max(map(len, keyword.kwlist))
KEYWORDS = np.zeros((len(keyword.kwlist), _KW_LEN), np.uint8)
KEYWORD_LENGTHS = np.array([len(k) for k in keyword.kwlist], np.int64)
for _row, _word in enumerate(keyword.kwlist):
    KEYWORDS[_row, :len(_word)] = np.frombuffer(_word.encode(), np.uint8)

DEC, HEX, BIN, OCT, ZERO = 0, 1, 2, 3, 4  # digit classes of tokenize's number pattern
SQ, DQ, NL, CR, BACKSLASH, HASH, DOT, UNDERSCORE = 39, 34, 10, 13, 92, 35, 46, 95


def python_names(data: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """[start, end) byte ranges of the names (keywords excluded) of Python source as UTF-8 bytes (uint8);
    None when a name holds a non-ASCII character (the regular expression's Unicode rules apply)."""
    starts, ends, unicode_name = _names(data, KEYWORDS, KEYWORD_LENGTHS)
    return None if unicode_name else (starts, ends)


@numba.njit(cache=True, nogil=True)
def _is_word(c):  # pragma: no cover - compiled
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == UNDERSCORE or c >= 128


@numba.njit(cache=True, nogil=True)
def _is_name_start(c):  # pragma: no cover - compiled
    return (65 <= c <= 90) or (97 <= c <= 122) or c == UNDERSCORE or c >= 128


@numba.njit(cache=True, nogil=True)
def _in_class(c, kind):  # pragma: no cover - compiled
    if kind == DEC:
        return 48 <= c <= 57
    if kind == HEX:
        return (48 <= c <= 57) or (65 <= c <= 70) or (97 <= c <= 102)
    if kind == BIN:
        return c == 48 or c == 49
    if kind == OCT:
        return 48 <= c <= 55
    return c == 48  # ZERO


@numba.njit(cache=True, nogil=True)
def _units(b, i, n, kind):  # pragma: no cover - compiled
    """End of (?:_?C)* from i."""
    while True:
        if i < n and _in_class(b[i], kind):
            i += 1
        elif i + 1 < n and b[i] == UNDERSCORE and _in_class(b[i + 1], kind):
            i += 2
        else:
            return i


@numba.njit(cache=True, nogil=True)
def _digitpart(b, i, n):  # pragma: no cover - compiled
    """End of [0-9](?:_?[0-9])* at i, or -1."""
    if i >= n or not (48 <= b[i] <= 57):
        return -1
    return _units(b, i + 1, n, DEC)


@numba.njit(cache=True, nogil=True)
def _exponent(b, i, n):  # pragma: no cover - compiled
    """End of [eE][-+]?[0-9](?:_?[0-9])* at i, or -1."""
    if i >= n or not (b[i] == 101 or b[i] == 69):
        return -1
    j = i + 1
    if j < n and (b[j] == 43 or b[j] == 45):
        j += 1
    return _digitpart(b, j, n)


@numba.njit(cache=True, nogil=True)
def _floatnumber(b, i, n):  # pragma: no cover - compiled
    """End of tokenize's Floatnumber (Pointfloat, else Expfloat) at i, or -1."""
    d = _digitpart(b, i, n)
    end = -1
    if d >= 0 and d < n and b[d] == DOT:  # digits "." [digits]
        end = d + 1
        f = _digitpart(b, end, n)
        if f >= 0:
            end = f
    elif i < n and b[i] == DOT:  # "." digits
        end = _digitpart(b, i + 1, n)
    if end >= 0:
        x = _exponent(b, end, n)
        return x if x >= 0 else end
    if d >= 0:  # digits exponent
        return _exponent(b, d, n)
    return -1


@numba.njit(cache=True, nogil=True)
def _number(b, i, n):  # pragma: no cover - compiled
    """End of tokenize's Number (Imagnumber, Floatnumber, Intnumber, in that order) at i, or -1."""
    d = _digitpart(b, i, n)
    if d >= 0 and d < n and (b[d] == 106 or b[d] == 74):
        return d + 1
    f = _floatnumber(b, i, n)
    if f >= 0:
        if f < n and (b[f] == 106 or b[f] == 74):
            return f + 1
        return f
    if i + 1 < n and b[i] == 48:
        c = b[i + 1]
        kind = HEX if (c == 120 or c == 88) else BIN if (c == 98 or c == 66) else OCT if (c == 111 or c == 79) else -1
        if kind >= 0:
            e = _units(b, i + 2, n, kind)
            if e > i + 2:
                return e
    if i < n and b[i] == 48:
        return _units(b, i + 1, n, ZERO)
    if i < n and 49 <= b[i] <= 57:
        return _units(b, i + 1, n, DEC)
    return -1


@numba.njit(cache=True, nogil=True)
def _lower(c):  # pragma: no cover - compiled
    return c + 32 if 65 <= c <= 90 else c


@numba.njit(cache=True, nogil=True)
def _quote_at(b, i, n):  # pragma: no cover - compiled
    """Where the quote of a string starting at i is: after the one valid prefix (br, rb, fr, rf; b, r, u, f;
    any case) that a quote follows, or at i; -1 when no string can start at i."""
    if i + 2 < n and (b[i + 2] == SQ or b[i + 2] == DQ):
        p, q = _lower(b[i]), _lower(b[i + 1])
        if (p == 98 and q == 114) or (p == 114 and q == 98) or (p == 102 and q == 114) or (p == 114 and q == 102):
            return i + 2
    if i + 1 < n and (b[i + 1] == SQ or b[i + 1] == DQ):
        p = _lower(b[i])
        if p == 98 or p == 114 or p == 117 or p == 102:
            return i + 1
    if i < n and (b[i] == SQ or b[i] == DQ):
        return i
    return -1


@numba.njit(cache=True, nogil=True)
def _string_end(b, q, n, triple):  # pragma: no cover - compiled
    """End of the string whose opening quote is at q, or -1: a triple-quoted one (its three quotes at q) runs
    to the next unescaped three, a one-line one to the next unescaped quote, and fails at a line end; both
    fail at the end of the text."""
    c = b[q]
    width = 3 if triple else 1
    if triple and not (q + 2 < n and b[q + 1] == c and b[q + 2] == c):
        return -1
    i = q + width
    while i < n:
        if b[i] == BACKSLASH:
            if i + 1 >= n:
                return -1
            i += 2
        elif b[i] == c and (not triple or (i + 2 < n and b[i + 1] == c and b[i + 2] == c)):
            return i + width
        elif b[i] == NL and not triple:
            return -1
        else:
            i += 1
    return -1


@numba.njit(cache=True, nogil=True)
def _prefix_then_quote(b, i, n):  # pragma: no cover - compiled
    """The name's lookahead (?![rRbBuUfF]{1,2}['"]): a string may start here, so this is no name."""
    s = _lower(b[i])
    if not (s == 114 or s == 98 or s == 117 or s == 102):
        return False
    if i + 1 < n and (b[i + 1] == SQ or b[i + 1] == DQ):
        return True
    if i + 2 < n and (b[i + 2] == SQ or b[i + 2] == DQ):
        t = _lower(b[i + 1])
        return t == 114 or t == 98 or t == 117 or t == 102
    return False


@numba.njit(cache=True, nogil=True)
def _is_keyword(b, start, end, keywords, lengths):  # pragma: no cover - compiled
    size = end - start
    for k in range(len(lengths)):
        if lengths[k] != size:
            continue
        same = True
        for j in range(size):
            if b[start + j] != keywords[k, j]:
                same = False
                break
        if same:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _names(b, keywords, lengths):  # pragma: no cover - compiled
    n = len(b)
    starts = np.empty(n // 2 + 1, np.int64)
    ends = np.empty(n // 2 + 1, np.int64)
    found = 0
    i = 0
    while i < n:
        c = b[i]
        if not (_is_word(c) or c == HASH or c == SQ or c == DQ or c == DOT):
            i += 1
            continue
        if _is_name_start(c) and not _prefix_then_quote(b, i, n):
            e = i + 1
            while e < n and _is_word(b[e]):
                e += 1
            for k in range(i, e):
                if b[k] >= 128:
                    return starts[:0].copy(), ends[:0].copy(), True
            if not _is_keyword(b, i, e, keywords, lengths):
                starts[found] = i
                ends[found] = e
                found += 1
            i = e
            continue
        if c == HASH:
            e = i + 1
            while e < n and b[e] != NL and b[e] != CR:
                e += 1
            i = e
            continue
        q = _quote_at(b, i, n)
        if q >= 0:
            e = _string_end(b, q, n, True)
            if e < 0:
                e = _string_end(b, q, n, False)
            if e >= 0:
                i = e
                continue
        e = _number(b, i, n)
        if e >= 0:
            i = e
            continue
        i += 1
    return starts[:found].copy(), ends[:found].copy(), False
