"""The HTML report parses, is self-contained, embeds valid SVG plots, and shows the index's numbers."""
from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from pipeline.report.build import write_report
from tests.report.fixtures import make_dataset


class Page(HTMLParser):
    """Collects tags, attributes, and the text of table cells and cards."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("html"), dynamic_merges=4)


@pytest.fixture(scope="module")
def page(dataset):
    p = Page()
    p.feed(open(write_report(str(dataset.out))).read())
    p.close()
    return p


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
