"""The compiled lexer of Python source gives exactly the spans of spans.py's regular expression."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from pipeline.stages.python_lexer import python_names
from pipeline.stages.spans import _KEYWORDS, _PYTHON, _to_bytes
from tests.stages.helpers import STDLIB

PACKAGES = ("email", "json", "asyncio", "unittest", "logging", "importlib", "xml", "http", "concurrent")


def expression(text: str) -> list[tuple[int, int]]:
    """The regular expression's names as UTF-8 byte ranges."""
    starts, ends = _to_bytes(text, [m.span() for m in _PYTHON.finditer(text)
                                    if m.lastgroup == "ident" and m.group() not in _KEYWORDS])
    return list(zip(starts.tolist(), ends.tolist()))


def compiled(text: str) -> list[tuple[int, int]] | None:
    found = python_names(np.frombuffer(text.encode(), np.uint8))
    return None if found is None else list(zip(found[0].tolist(), found[1].tolist()))


def test_the_same_spans_as_the_expression_on_the_standard_library():
    """Every source of the standard library's top level and of nine of its packages, non-ASCII ones included
    (their non-ASCII characters in strings and comments); only sources with a non-ASCII name are left to
    the expression."""
    paths = sorted(STDLIB.glob("*.py")) + sorted(p for pkg in PACKAGES for p in (STDLIB / pkg).rglob("*.py"))
    texts = [p.read_text(encoding="utf-8") for p in paths]
    assert len(texts) > 300 and sum(not t.isascii() for t in texts) > 5
    left = 0
    for text in texts:
        got = compiled(text)
        left += got is None
        assert got is None or got == expression(text)
    assert left <= 3, left


def test_a_name_with_a_non_ascii_character_is_left_to_the_expression():
    assert compiled("caf\u00e9 = 1") is None and compiled("x = 1 \u2192 2") is None
    text = "s = 'caf\u00e9'  # d\u00e9j\u00e0 vu\nx = 2\n"
    assert compiled(text) == expression(text) == [(0, 1), (len("s = 'caf\u00e9'  # d\u00e9j\u00e0 vu\n".encode()),
                                                          len("s = 'caf\u00e9'  # d\u00e9j\u00e0 vu\nx".encode()))]


# the characters where the two could part: string prefixes and quotes, escapes, line ends, number parts
PIECES = list("abfruxXeEjJbBoO_0179.#'\"\\\n\r +-(") + ["'''", '"""', "rb'", "Rf\"", "0x", "1_0", "1e+", ".5j",
                                                       "\u00e9", "\u2192", "\u0663"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_the_same_spans_as_the_expression_on_any_mix_of_the_hard_parts(pieces):
    text = "".join(pieces)
    got = compiled(text)
    assert got is None or got == expression(text)
    if text.isascii():
        assert got is not None


def test_hand_checked_names():
    text = "if x0 == 0x1F: y = rb'z' + f\"{w}\" # q\nv = 1.real + 1e5j + '''a\nb''' + fb'c'"
    names = [text[a:b] for a, b in compiled(text)]
    assert names == ["x0", "y", "v", "real"]
