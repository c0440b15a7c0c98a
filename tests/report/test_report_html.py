"""The HTML report parses, is self-contained, embeds valid SVG plots, and shows the index's numbers."""
from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline.report.build import write_report
from tests.report.fixtures import make_dataset
from tests.report.page import parse, svg_text, too_precise, wrong_plurals


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("html"), dynamic_merges=4, formats=("arrow", "parquet"))


@pytest.fixture(scope="module")
def page(dataset):
    return parse(write_report(str(dataset.out)))


def test_parses_with_balanced_tags(page):
    assert page.open == [], f"unclosed tags: {page.open}"
    assert [t for t, _ in page.tags][:2] == ["html", "head"]


def test_self_contained(page):
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe")]
    refs = [a.get(k) for _, a in page.tags for k in ("src", "href") if a.get(k)]
    assert refs and all(r.startswith("data:") for r in refs), refs


def test_plots_are_valid_svg(page):
    alts = []
    for tag, attrs in page.tags:
        if tag == "img":
            head, data = attrs["src"].split(",", 1)
            assert head == "data:image/svg+xml;base64"
            root = ET.fromstring(base64.b64decode(data))
            assert root.tag.endswith("svg") and len(root) > 0
            alts.append(attrs["alt"])
    assert {"tokens per group", "bytes per token per group", "token length histogram",
            "length reduction per shard", "throughput over time", "throughput per worker"} <= set(alts)


def test_shows_totals_and_groups_of_the_index(dataset, page):
    index = json.loads((dataset.out / "dataset.json").read_text())
    text = " ".join(page.text)
    for key in ("n_samples", "n_tokens", "n_shards"):
        assert f"{index['totals'][key]:,}" in text, key
    for folder in ("code", "docs"):
        tokens = sum(len(s["stored"]) for s in dataset.samples if f"/corpus/{folder}/" in s["source"])
        assert f"{tokens:,}" in text, folder
    assert "never used" in text and "invalid utf-8 at byte N" in text and "shorter" in text


def test_tokenizer_and_spec_section(dataset, page):
    index = json.loads((dataset.out / "dataset.json").read_text())
    tok, facts = index["tokenizer"], page.facts
    assert (facts["kind"], facts["engine"], facts["fingerprint"], facts["spec hash"]) == \
        ("hf", "hf", tok["fingerprint"], "fixture")
    assert facts["vocabulary"].startswith(f"{tok['vocab_size']:,} base ids (0 to {tok['vocab_size'] - 1:,})")
    assert "the dynamic stage adds up to 4 ids" in facts["vocabulary"]
    assert facts["EOS id"] == "0 <eos>, appended to every sample" and facts["special ids"] == "0 <eos>"
    assert facts["token dtype"] == "uint16 (2 bytes per stored token, ids up to 65,535)"
    assert facts["tokenizer files"] == "tokenizer/tokenizer.json" and facts["modality"] == "code"
    stages = page.table("#")
    assert stages[1][:2] == ["1", "dynamic"]
    assert stages[1][2] == "batch_size 256, max_merges 4, min_count 2, scope shard, within_words false"


def test_sink_formats_with_their_size_on_disk(dataset, page):
    """Per format: the shard files on disk (listed here, not read from the index) and their summed size."""
    from pipeline.report.fmt import num, size
    rows = {r[0]: r[1:] for r in page.table("format")[1:]}
    assert set(rows) == {"arrow", "parquet"}
    n_tokens = sum(len(s["stored"]) for s in dataset.samples)
    for fmt, ext in (("arrow", ".arrow"), ("parquet", ".parquet")):
        files = sorted((dataset.out / "shards").glob(f"*{ext}"))
        on_disk = sum(f.stat().st_size for f in files)
        assert rows[fmt] == [str(len(files)), size(on_disk), num(on_disk / n_tokens)], fmt
    assert rows["arrow"] != rows["parquet"]


def test_token_premium_is_explained_with_what_to_do(dataset, page):
    text = page.section("By folder")
    assert "Token premium is the dataset's bytes per token" in text and "over the group's" in text
    assert "25% more tokens on each byte of that group than on the average byte" in text
    assert "tokenmill train" in text and "--vocab-size" in text
    by_folder: dict[str, list[int]] = {}
    for s in dataset.samples:
        acc = by_folder.setdefault(s["source"].split("/corpus/")[1].split("/")[0], [0, 0])
        acc[0], acc[1] = acc[0] + s["n_bytes"], acc[1] + len(s["stored"])
    overall = sum(b for b, _ in by_folder.values()) / sum(t for _, t in by_folder.values())
    highest = max(by_folder, key=lambda g: overall / (by_folder[g][0] / by_folder[g][1]))
    assert f"Highest here: {highest}," in text
    header = next(a for t, a in page.tags if t == "th" and "title" in a)
    assert "bytes per token" in header["title"]


def test_top_tokens_show_whitespace_escaped(dataset, page):
    """No token cell is blank; whole-character tokens read back to what the tokenizer decodes."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(dataset.out / "tokenizer" / "tokenizer.json"))
    rows = page.table("id", "token")[1:]
    assert len(rows) == 20
    unescape = {"␣": " ", "\\n": "\n", "\\t": "\t", "\\r": "\r"}
    checked = 0
    for token_id, shown, *_ in rows:
        assert shown.strip() and shown == shown.strip(), repr(shown)
        decoded = tok.decode([int(token_id)], skip_special_tokens=False)
        if "\ufffd" not in decoded and "<0x" not in shown:
            for mark, char in unescape.items():
                shown = shown.replace(mark, char)
            assert shown.removesuffix(" (special)") == decoded, (token_id, shown, decoded)
            checked += 1
    assert checked >= 15
    assert any("␣" in r[1] for r in rows) and any("\\n" in r[1] for r in rows)
    assert "␣ a space" in page.section("Vocabulary use")


def test_every_number_has_at_most_three_significant_digits(page):
    prose = " ".join(page.prose)
    assert too_precise(prose) == [], too_precise(prose)
    assert wrong_plurals(prose) == []
    assert too_precise("24.884 MB/s and 2.1086") == ["24.884", "2.1086"]  # the check itself bites


def test_one_of_anything_reads_in_the_singular(tmp_path):
    ds = make_dataset(tmp_path, n_code=1, n_docs=0, files_per_unit=10, workers=1)
    assert len(ds.shards) == len(ds.samples) == 1 and len(ds.errors) == 2
    path = write_report(str(ds.out))
    p, html = parse(path), Path(path).read_text()
    prose = " ".join(p.prose)
    assert wrong_plurals(prose) == [], wrong_plurals(prose)
    for card in ("<b>1</b><span>shard</span>", "<b>1</b><span>sample</span>", "<b>2</b><span>quarantined inputs</span>"):
        assert card in html, card
    assert "The 1 longest sample" in prose and "2 inputs quarantined" in prose
    assert p.table("run started")[1][1:3] == ["1", "1"]  # one unit, one worker
    assert wrong_plurals("1 shards, 1 units") == ["shards", "units"]  # the check itself bites


@pytest.fixture(scope="module")
def many_groups(tmp_path_factory):
    ds = make_dataset(tmp_path_factory.mktemp("groups"), n_code=0, n_docs=0, packages=30, files_per_unit=8)
    return ds, parse(write_report(str(ds.out)))


def test_charts_past_25_groups_put_the_rest_in_one_bar(many_groups):
    ds, page = many_groups
    groups = {s["source"].split("/corpus/")[1].split("/")[0] for s in ds.samples}
    assert len(groups) > 25
    for alt in ("tokens per group", "bytes per token per group"):
        svg = svg_text(page, alt)
        assert f"first 24 of {len(groups)}" in svg and f"{len(groups) - 24} others" in svg, alt
    table = page.table("group")[1:]
    assert {r[0] for r in table} == groups  # the table below the charts lists every group
    assert too_precise(" ".join(page.prose)) == []
