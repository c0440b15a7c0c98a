"""The report's number and token formatting: counts exact, measures 3 significant digits, visible whitespace."""
from __future__ import annotations

import pytest

from pipeline.report.fmt import mb_s, num, pct, plural, sig, size, visible


@pytest.mark.parametrize("value, shown", [
    (24.884, "24.9"), (2.1086, "2.11"), (2.1, "2.10"), (0.5, "0.500"), (0.0001234, "0.000123"),
    (9.996, "10.0"), (99.96, "100"), (999.4, "999"), (999.6, "1,000"), (15006.2, "15,006"), (-3.14159, "-3.14"),
    (0.0, "0"),
])
def test_three_significant_digits(value, shown):
    assert sig(value) == shown


def test_counts_are_exact_and_measures_are_not():
    assert num(1) == "1" and num(1234567) == "1,234,567" and num(None) == "–"
    assert num(3.0) == "3.00" and num(1234567.8) == "1,234,568"


@pytest.mark.parametrize("n, shown", [(0, "0 B"), (1023, "1,023 B"), (1024, "1.00 KiB"), (1500, "1.46 KiB"),
                                      (1023 * 1024, "0.999 MiB"), (5 * 2**30, "5.00 GiB"), (3 * 2**40, "3.00 TiB")])
def test_sizes(n, shown):
    assert size(n) == shown


def test_shares_rates_and_plurals():
    assert (pct(0.302), pct(1.0), pct(0.005), pct(None)) == ("30.2%", "100%", "0.500%", "–")
    assert mb_s(24_884_000) == "24.9" and mb_s(None) == "–"
    assert (plural(1, "shard"), plural(2, "shard"), plural(0, "shard"), plural(1758, "sample")) == \
        ("1 shard", "2 shards", "0 shards", "1,758 samples")
    assert plural(2, "index", "indices") == "2 indices"


@pytest.mark.parametrize("text, shown", [
    (" ", "␣"), ("\n", "\\n"), ("\t", "\\t"), ("\r\n", "\\r\\n"), ("\x00", "<0x00>"), ("\x1b", "<0x1B>"),
    ("\u00a0", "<0xC2><0xA0>"), ("\u200b", "<0xE2><0x80><0x8B>"), ("\udcc3", "<0xC3>"), ("\\n", "\\\\n"),
    ("  def", "␣␣def"), ("é", "é"), ("", "(empty)"),
])
def test_visible_whitespace_and_bytes(text, shown):
    assert visible(text) == shown


def test_every_mark_has_a_glyph_in_the_default_linux_font():
    """DejaVu Sans Mono (Debian's default monospace; matplotlib ships a copy) draws every mark used."""
    import os

    import matplotlib
    from matplotlib.ft2font import FT2Font
    font = FT2Font(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSansMono.ttf"))
    marks = set(visible(" \n\t\r\x00\x7f\\\udcff"))
    assert {"␣", "\\", "<", ">"} <= marks
    assert [m for m in marks if font.get_char_index(ord(m)) == 0] == []
    assert font.get_char_index(ord("␠")) == 0  # why the space mark is ␣: ␠ would draw as an empty box
