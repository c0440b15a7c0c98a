"""HTML building blocks of the report: escaped text, tables, embedded plots, notes, inline CSS.

Every string from the data goes through `esc`; a cell that is already markup is passed as
('raw', html). Tables show the first MAX_ROWS rows and say where the rest are.
"""
from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

MAX_ROWS = 50

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
main{max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d9dde3;padding-bottom:4px}
.sub{color:#5b6475;margin:0 0 16px} .cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}
.card{background:#fff;border:1px solid #d9dde3;border-radius:6px;padding:10px 14px;min-width:120px}
.card b{display:block;font-size:20px} .card span{color:#5b6475;font-size:12px}
table{border-collapse:collapse;background:#fff;margin:8px 0;font-size:13px;width:100%}
th,td{border:1px solid #e1e4e8;padding:4px 8px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums} th{background:#eef1f5} tr.rest td{color:#5b6475;font-style:italic}
code{font-size:12px;word-break:break-all} code.tok{white-space:pre;background:#eef1f5;padding:0 2px}
.note{color:#5b6475;font-size:12px;margin:0 0 8px} img{max-width:100%;background:#fff;border:1px solid #e1e4e8;margin:8px 0}
.alert{background:#fff4e5;border:1px solid #f0b86e;border-radius:6px;padding:8px 12px;margin:10px 0}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:10px}
.empty{background:#eef1f5;border-radius:6px;padding:16px;font-size:16px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
dl.facts dt{color:#5b6475} dl.facts dd{margin:0}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of any value."""
    return html.escape("" if value is None else str(value))


def raw(markup: str) -> tuple[str, str]:
    """A table cell that is already HTML."""
    return ("raw", markup)


def code(text: Any, cls: str = "") -> str:
    """Escaped text in <code>, optionally with a class (tok: whitespace kept)."""
    attr = f' class="{cls}"' if cls else ""
    return f"<code{attr}>{esc(text)}</code>"


def table(headers: list[str], rows: Iterable[list[Any]], numeric: Iterable[int] = (),
          rest: list[Any] | None = None, titles: dict[int, str] | None = None) -> str:
    """An HTML table of the first MAX_ROWS rows; `rest` is a summary row for the others, if any.

    Cells are escaped except those made with `raw`; `titles` are tooltips of header cells.
    """
    numeric, titles, rows = set(numeric), titles or {}, list(rows)
    head = "".join(f'<th title="{esc(titles[i])}">{esc(h)}</th>' if i in titles else f"<th>{esc(h)}</th>"
                   for i, h in enumerate(headers))
    body = [_row(r, numeric) for r in rows[:MAX_ROWS]]
    if rest is not None and len(rows) > MAX_ROWS:
        body.append(_row(rest, numeric, ' class="rest"'))
    more = (f'<p class="note">First {MAX_ROWS} of {len(rows):,} rows'
            f'{", the rest summed in the last row" if rest is not None else ""}; '
            "<code>tokenmill stats OUT --json</code> has them all.</p>") if len(rows) > MAX_ROWS else ""
    return f"<table><tr>{head}</tr>" + "".join(body) + "</table>" + more


def _row(row: list[Any], numeric: set[int], attrs: str = "") -> str:
    cells = [c[1] if isinstance(c, tuple) else esc(c) for c in row]
    return f"<tr{attrs}>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                   for i, c in enumerate(cells)) + "</tr>"


def facts(pairs: Iterable[tuple[str, str]]) -> str:
    """A definition list of (label, html) pairs."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def note(markup: str) -> str:
    """A small explanatory paragraph (already HTML)."""
    return f'<p class="note">{markup}</p>'


def img(uri: str, alt: str) -> str:
    """An embedded plot."""
    return f'<img src="{uri}" alt="{esc(alt)}">'


def side_by_side(*parts: str) -> str:
    """Plots next to each other where the page is wide enough."""
    return '<div class="plots">' + "".join(p for p in parts if p) + "</div>"
