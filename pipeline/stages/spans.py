"""Token merging spans: the runs of tokens that make up one word or one code identifier.

After "On the Effect of Token Merging on Pre-trained Models for Code": a model pools the
subtokens of each span into one vector. A span is [start, end) in base-token indices of its row;
only spans of two or more tokens are stored (a one-token span pools nothing). Words are runs of
Unicode letters, digits and `_`; identifiers of .py sources are the NAME tokens (keywords excluded)
that Python's `tokenize` gives, found by one compiled regular expression built from tokenize's own
string-prefix and number patterns (the same spans on every standard-library source, tested; 8x
faster than tokenize's Python loop), which `python_lexer` runs compiled (numba), 7x faster again (the
expression itself where a name is not ASCII); every other source uses a C-like regex lexer.
"""
from __future__ import annotations

import keyword
import logging
import re
import tokenize
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.spec import SpansSpec
from pipeline.stages.base import (TEXT_COLUMN, WORD, Stage, TextLayout, flat_tokens, put_column, span_array,
                                  text_layout, tokens_covering)

log = logging.getLogger(__name__)

PYTHON_SUFFIXES = (".py", ".pyi", ".pyw")
# Comments and strings are matched (and skipped) so identifiers inside them are not spans.
_LEXER = re.compile(r"""
    //[^\n]*  |  /\*.*?\*/                                   # comments
  | "(?:[^"\\\n]|\\.)*"  |  '(?:[^'\\\n]|\\.)*'  |  `[^`]*`   # strings
  | \d\w*                                                   # numbers (0x1F is not an identifier)
  | (?P<ident>[^\W\d]\w*)
""", re.VERBOSE | re.DOTALL)


# Python: names are matched first (not a string prefix followed by a quote); comments, strings (any prefix,
# triple-quoted across lines) and numbers are matched so what is inside them is skipped, as tokenize does.
# The lookahead makes every other position (spaces, operators) fail at once.
_PREFIXES = sorted((p for p in tokenize._all_string_prefixes() if p), key=lambda p: (-len(p), p))
_PREFIX = "(?:" + "|".join(re.escape(p) for p in _PREFIXES) + ")?"
_PYTHON = re.compile(
    r"(?=[\w#'\".])(?:(?P<ident>(?![rRbBuUfF]{1,2}['\"])[^\W\d]\w*)"
    r"|#[^\r\n]*"
    + "|" + _PREFIX + r"(?:'''(?:[^'\\]|\\.|'(?!''))*'''|\"\"\"(?:[^\"\\]|\\.|\"(?!\"\"))*\"\"\")"
    + "|" + _PREFIX + r"(?:'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\")"
    + "|" + tokenize.Number + ")", re.DOTALL)
_KEYWORDS = frozenset(keyword.kwlist)


class MergeSpans(Stage):
    """The `spans` stage: adds the `spans` column; tokens are unchanged."""

    kind = "spans"
    spec: SpansSpec

    def __init__(self, spec: SpansSpec, ctx: Any, name: str | None = None) -> None:
        super().__init__(spec, ctx, name)
        if spec.unit == "identifier":  # the compiled lexer loads (or compiles, ~4 s once) as the actor starts
            python_identifiers("x = 1")

    def __call__(self, table: pa.Table) -> pa.Table:
        tokens, offsets = flat_tokens(table)
        layout = text_layout(table, self.ctx, tokens, offsets)
        self._fallbacks: dict[str, int] = {}
        if self.spec.unit == "word":
            byte_start, byte_end = word_ranges(layout)
        else:
            byte_start, byte_end = self._identifier_ranges(table, layout)
        first, last = tokens_covering(layout, byte_start, byte_end)
        row = np.searchsorted(layout.doc_start, byte_start, side="right") - 1
        ok = (last - first >= 2) & layout.aligned[row] if len(row) else np.zeros(0, bool)
        row, first, last = row[ok], first[ok], last[ok]
        span_offsets = np.searchsorted(row, np.arange(table.num_rows + 1), side="left")
        column = span_array(first - offsets[row], last - offsets[row], span_offsets)
        self.stats = {"spans": int(ok.sum()), "tokens_in_spans": int((last - first).sum()),
                      "tokens": len(tokens), "rows_unaligned": int((~layout.aligned).sum()),
                      **self._fallbacks}
        return put_column(table, "spans", column)

    def _identifier_ranges(self, table: pa.Table, layout: TextLayout) -> tuple[np.ndarray, np.ndarray]:
        """Byte ranges of identifiers, document by document (Python tokenize or the regex lexer)."""
        texts = table.column(TEXT_COLUMN).to_pylist()
        sources = table.column("source").to_pylist() if "source" in table.column_names else [""] * len(texts)
        starts, ends = [], []
        self._fallbacks = {"python_docs": 0}
        for i, (text, source) in enumerate(zip(texts, sources)):
            if not layout.aligned[i] or not text:
                continue
            s, e = self._doc_identifiers(text, source or "")
            starts.append(s + layout.doc_start[i])
            ends.append(e + layout.doc_start[i])
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)  # noqa: E731
        return cat(starts), cat(ends)

    def _doc_identifiers(self, text: str, source: str) -> tuple[np.ndarray, np.ndarray]:
        if self.ctx.modality == "code" and source.lower().endswith(PYTHON_SUFFIXES):
            self._fallbacks["python_docs"] += 1
            return python_identifiers(text)
        return regex_identifiers(text)


def word_ranges(layout: TextLayout) -> tuple[np.ndarray, np.ndarray]:
    """Byte ranges [start, end) of maximal WORD runs, never crossing a document boundary."""
    is_word = layout.classes == WORD
    edge = np.zeros(len(is_word) + 1, bool)
    edge[layout.doc_start] = True
    prev = np.concatenate([[False], is_word])
    nxt = np.concatenate([is_word, [False]])
    starts = np.flatnonzero(nxt & (~prev | edge))
    ends = np.flatnonzero(prev & (~nxt | edge))
    return starts, ends


def regex_identifiers(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Byte ranges of identifiers found by the C-like regex lexer."""
    spans = [m.span("ident") for m in _LEXER.finditer(text) if m.lastgroup == "ident"]
    return _to_bytes(text, spans)


def python_identifiers(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Byte ranges of the NAME tokens (keywords excluded) Python's tokenize gives, by the compiled lexer.
    Source tokenize cannot read (an unclosed string) still gets the names outside its strings and comments.
    The same expression compiled by hand (python_lexer: 7x faster, the same spans) answers unless a name
    holds a non-ASCII character."""
    from pipeline.stages.python_lexer import python_names  # numba, loaded only by jobs with this stage
    found = python_names(np.frombuffer(text.encode(), np.uint8))
    if found is not None:
        return found
    spans = [m.span() for m in _PYTHON.finditer(text) if m.lastgroup == "ident" and m.group() not in _KEYWORDS]
    return _to_bytes(text, spans)


def _to_bytes(text: str, spans: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Character ranges -> UTF-8 byte ranges."""
    if not spans:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    chars = np.array(spans, dtype=np.int64)
    if text.isascii():
        return chars[:, 0], chars[:, 1]
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    width = 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)
    byte_at = np.concatenate([[0], np.cumsum(width)])
    return byte_at[chars[:, 0]], byte_at[chars[:, 1]]
