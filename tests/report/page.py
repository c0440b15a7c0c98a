"""An HTML parser for the report tests: tags, text outside <code>, sections by heading, table cells."""
from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

VOID = ("img", "meta", "br")


class Page(HTMLParser):
    """Collects tags and attributes, the text (all, and outside <code>), sections by <h2>, and tables."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.prose: list[str] = []  # text outside <code>: what the number rules apply to
        self.sections: dict[str, list[str]] = {}
        self.tables: list[list[list[str]]] = []
        self.facts: dict[str, str] = {}  # <dt> label -> <dd> text
        self.open: list[str] = []
        self._section: list[str] | None = None
        self._heading: list[str] | None = None
        self._fact = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)
        if tag == "h2":
            self._heading = []
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][-1].append("")
        elif tag == "dt":
            self._fact = ""
        elif tag == "dd":
            self.facts[self._fact] = ""

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1] if self.open else None}>"
        self.open.pop()
        if tag == "h2":
            self._section = self.sections.setdefault("".join(self._heading), [])
            self._heading = None

    def handle_data(self, data):
        self.text.append(data)
        if "code" not in self.open:
            self.prose.append(data)
        if self._heading is not None:
            self._heading.append(data)
        elif self._section is not None:
            self._section.append(data)
        if any(t in ("td", "th") for t in self.open):
            self.tables[-1][-1][-1] += data
        if "dt" in self.open:
            self._fact += data
        elif "dd" in self.open:
            self.facts[self._fact] += data

    def section(self, title: str) -> str:
        """The text under an <h2>, up to the next one, whitespace runs as one space."""
        return " ".join("".join(self.sections[title]).split())

    def table(self, *headers: str) -> list[list[str]]:
        """The rows (header first) of the first table whose header cells start with these."""
        return next(t for t in self.tables if t and t[0][:len(headers)] == list(headers))


def parse(path: str) -> Page:
    p = Page()
    p.feed(Path(path).read_text())
    p.close()
    return p


DECIMAL = re.compile(r"(?<![\w.\-/])\d[\d,]*\.\d+(?![\w.])")
WRONG_PLURAL = re.compile(r"(?<![\d,.])1 (shards|samples|tokens|inputs|units|workers|ids|base ids|bytes|files|runs)\b")


def too_precise(text: str, digits: int = 3) -> list[str]:
    """Decimal numbers in text with more than `digits` significant digits ('24.884', '2.1086')."""
    return [m for m in DECIMAL.findall(text) if len(m.replace(",", "").replace(".", "").lstrip("0")) > digits]


def wrong_plurals(text: str) -> list[str]:
    """'1 shards' and the like."""
    return WRONG_PLURAL.findall(text)


def svg_text(page: Page, alt: str) -> str:
    """The decoded SVG source of the plot with that alt text."""
    src = next(a["src"] for t, a in page.tags if t == "img" and a.get("alt") == alt)
    return base64.b64decode(src.split(",", 1)[1]).decode("utf-8")
