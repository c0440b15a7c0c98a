"""The spans stage: word and identifier groups cover exactly the intended tokens."""
from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline.spec import DynamicSpec, SpansSpec
from pipeline.stages import StageContext, build_stages, expand_table
from pipeline.stages.spans import python_identifiers, regex_identifiers
from tests.stages.helpers import STDLIB, make_table, rows

PIECES = [b"    ", b" self", b".", b"assert", b"Equal", b"(", b"x", b"_", b"id", b",", b" 'a", b"ss", b"'",
          b")", b"\n", b"# ", b"<eos>", b"caf", "\u00e9".encode(), b" d\xc3", b"\xa9j", b"\xc3\xa0"]
EOS = 16


def spans_of(table, unit: str, token_bytes=PIECES, eos_id=EOS, modality="code"):
    ctx = StageContext(modality=modality, base_vocab_size=len(token_bytes), eos_id=eos_id, token_bytes=token_bytes)
    (stage,) = build_stages([SpansSpec(kind="spans", unit=unit)], ctx)
    out = stage(table)
    return [[(s["start"], s["end"]) for s in row] for row in rows(out, "spans")], stage, out


def doc(ids: list[int]) -> tuple[list[int], str]:
    return ids, b"".join(PIECES[i] for i in ids if i != EOS).decode()


def test_hand_checked_identifier_spans():
    # "     self.assertEqual(x_id, 'ass')\n" + EOS
    ids, text = doc([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, EOS])
    assert text == "     self.assertEqual(x_id, 'ass')\n"
    table = make_table([ids], [text], ["pkg/test_x.py"])
    got, stage, out = spans_of(table, "identifier")
    assert got == [[(3, 5), (6, 9)]]  # assertEqual and x_id; self is one token; 'ass' is a string
    assert stage.stats["python_docs"] == 1 and stage.stats["spans"] == 2
    assert rows(out) == [ids]  # tokens are unchanged


def test_hand_checked_word_spans_split_identifiers_at_punctuation():
    ids, text = doc([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, EOS])
    got, _, _ = spans_of(make_table([ids], [text]), "word")
    assert got == [[(3, 5), (6, 9), (10, 12)]]  # assertEqual, x_id ("_" is a word char), ass


def test_regex_lexer_for_other_languages_skips_strings_and_comments():
    text = 'int x_id = f("assertEqual"); // self.assertEqual\nint 0x1F = caf\u00e9;'
    starts, ends = regex_identifiers(text)
    found = [text.encode()[s:e].decode() for s, e in zip(starts, ends)]
    assert found == ["int", "x_id", "f", "int", "caf\u00e9"]


def _tokenize_names(text: str) -> list[tuple[int, int]]:
    """The reference: UTF-8 byte ranges of the NAME tokens (keywords excluded) of Python's own tokenize."""
    import io
    import keyword
    import tokenize
    line_start = np.cumsum([0] + [len(x) for x in text.splitlines(True)])  # in characters, as tokenize counts
    byte_at = np.cumsum([0] + [len(c.encode()) for c in text]) if not text.isascii() else None
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
            start = int(line_start[tok.start[0] - 1]) + tok.start[1]
            end = start + len(tok.string)
            out.append((start, end) if byte_at is None else (int(byte_at[start]), int(byte_at[end])))
    return out


TRICKY = "\n".join([
    'x = rb"\\\\" + f\'{y}\' + """a',
    ' b""" + Rb\'\'\'q\'\'\' + 1.real + 0x1F + 1_000j + .5e-3',
    's = "it\'s" \\',
    '    + u"caf\u00e9"  # self.comment',
    'match = case = _ = type = caf\u00e9(\u00e9=1)',
]) + "\n"


def test_the_compiled_python_lexer_gives_tokenizes_names_on_the_standard_library():
    """Every top-level module of the standard library, and the tricky cases above (string prefixes, a
    triple-quoted string across lines, numbers tokenize splits, a continued line, soft keywords): the same
    byte ranges as tokenize's NAME tokens, keywords excluded."""
    texts = [TRICKY] + [p.read_text(encoding="utf-8") for p in sorted(STDLIB.glob("*.py"))]
    assert len(texts) > 150
    for text in texts:
        starts, ends = python_identifiers(text)
        assert list(zip(starts.tolist(), ends.tolist())) == _tokenize_names(text)
    names = [TRICKY.encode()[a:b].decode() for a, b in _tokenize_names(TRICKY)]
    assert names == ["x", "real", "s", "match", "case", "_", "type", "caf\u00e9", "\u00e9"]  # f-strings are one token (3.11)


def test_python_identifiers_excludes_keywords_and_handles_unicode():
    text = "def f(caf\u00e9, x):\n    return caf\u00e9 + x  # comment self\n"
    starts, ends = python_identifiers(text)
    found = [text.encode()[s:e].decode() for s, e in zip(starts, ends)]
    assert found == ["f", "caf\u00e9", "x", "caf\u00e9", "x"]


def test_multibyte_tokens_and_unicode_words():
    # "café déjà" with byte-level pieces that split UTF-8 characters
    ids = [17, 18, 19, 20, 21, EOS]
    text = b"".join(PIECES[i] for i in ids if i != EOS).decode()
    assert text == "caf\u00e9 d\u00e9j\u00e0"
    got, _, _ = spans_of(make_table([ids], [text], ["notes.txt"], modality="text"), "word", modality="text")
    assert got == [[(0, 2), (2, 5)]]


def test_empty_one_token_and_unaligned_documents():
    docs = [[], [6], [1, 2, 3, 4], [3, 4, EOS]]
    texts = ["", "x", " self.assertEqual", "something else"]  # the last text does not match its tokens
    got, stage, out = spans_of(make_table(docs, texts), "word")
    assert got == [[], [], [(2, 4)], []]
    assert stage.stats["rows_unaligned"] == 1
    assert rows(out) == docs and out.num_rows == 4


def test_spans_on_real_stdlib_code(stdlib_bpe):
    paths = sorted((STDLIB / "unittest" / "test").glob("test_*.py"))[:6]
    table = stdlib_bpe.table(paths)
    got, stage, _ = spans_of(table, "identifier", stdlib_bpe.token_bytes, stdlib_bpe.eos_id)
    checked = 0
    for path, ids, spans in zip(paths, rows(table), got):
        text = path.read_text(encoding="utf-8").encode()
        ends = np.cumsum([0 if i == stdlib_bpe.eos_id else len(stdlib_bpe.token_bytes[i]) for i in ids])
        by_start = {}
        for s, e in spans:
            by_start[int(ends[s - 1]) if s else 0] = (s, e)
        for m in re.finditer(rb"self\.(assertEqual)\b", text):
            # the tokens that overlap "assertEqual" (hand rule: first token ending after it starts,
            # through the token that ends at or after its end) form exactly one span
            first = int(np.searchsorted(ends, m.start(1), side="right"))
            last = int(np.searchsorted(ends, m.end(1), side="left"))
            if last == first:
                continue  # a single-token identifier needs no span
            pieces = b"".join(stdlib_bpe.token_bytes[i] for i in ids[first:last + 1])
            assert b"assertEqual" in pieces and not pieces.startswith(b"self")
            assert (first, last + 1) in spans
            checked += 1
    assert checked > 50, "expected many multi-token self.assertEqual identifiers in unittest's tests"
    assert stage.stats["python_docs"] > 0 and stage.stats["spans"] > 1000


def test_acceptance_spans_then_dynamic_on_real_python(stdlib_bpe):
    paths = sorted((STDLIB / "unittest" / "test").glob("test_*.py"))[:4]
    table = stdlib_bpe.table(paths)
    ctx = StageContext("code", stdlib_bpe.vocab_size, stdlib_bpe.eos_id, stdlib_bpe.token_bytes)
    stages = build_stages([SpansSpec(kind="spans", unit="identifier"),
                           DynamicSpec(kind="dynamic", max_merges=512, scope="shard")], ctx)
    out = table
    for stage in stages:
        out = stage(out)
    base = expand_table(out)
    for path, ids in zip(paths, rows(base)):
        assert stdlib_bpe.tokenizer.decode(ids[:-1]) == path.read_text(encoding="utf-8")
    assert np.mean([len(r) for r in rows(out)]) < 0.8 * np.mean([len(r) for r in rows(table)])
    assert rows(base, "spans") == rows(stages[0](table), "spans")  # spans index base tokens
    assert sum(map(len, rows(base, "spans"))) > 100
    assert set(s.name for s in stages) == {"spans", "dynamic"}


def test_spans_need_text_columns():
    ctx = StageContext("code", len(PIECES), EOS, PIECES)
    (stage,) = build_stages([SpansSpec(kind="spans")], ctx)
    with pytest.raises(ValueError, match="_text"):
        stage(make_table([[1, 2]]))
