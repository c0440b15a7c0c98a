"""The report's plots: matplotlib (Agg) figures returned as SVG data URIs, so the HTML needs no network.

SVG output is made reproducible (fixed hash salt, no date), so the same statistics give
the same report bytes.
"""
from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # before pyplot, which picks its backend on import
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

from pipeline.report.fmt import sig

MAX_BARS = 25
SHOWN = MAX_BARS - 1  # bars drawn one per label when there are more; the last one is "N others"
COLOR = "#3b6ea8"
OTHERS = "#8c9bb0"
ACCENT = "#d1495b"
STYLE = {"svg.hashsalt": "tokenmill", "svg.fonttype": "none", "font.size": 9,
         "axes.spines.top": False, "axes.spines.right": False}


def _svg(fig: plt.Figure) -> str:
    """Close the figure and return it as a base64 SVG data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(height: float = 3.0, width: float = 5.0) -> tuple[plt.Figure, plt.Axes]:
    """A new figure; callers hold plt.rc_context(STYLE) so the style applies to its axes."""
    return plt.subplots(figsize=(width, height))


def _human(x: float, _pos: int = 0) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.3g}"


def bars(labels: list[str], values: list[float], *, title: str, xlabel: str,
         overall: float | None = None, others: float | None = None) -> str:
    """Horizontal bar chart, first label on top, with an optional 'overall' line.

    Past MAX_BARS labels, the first SHOWN are drawn and the rest become one last bar,
    "N others", of value `others` (the caller knows how they combine: a sum, or a ratio of
    sums); without it, their sum.
    """
    grouped = len(labels) > MAX_BARS
    if grouped:
        rest = len(labels) - SHOWN
        title = f"{title}\n(first {SHOWN} of {len(labels)}; the other {rest} in one bar)"
        others = sum(values[SHOWN:]) if others is None else others
        labels, values = [*labels[:SHOWN], f"{rest} others"], [*values[:SHOWN], others]
    with plt.rc_context(STYLE):
        fig, ax = _figure(height=0.9 + 0.28 * max(len(labels), 1))
        colors = [COLOR] * (len(values) - grouped) + [OTHERS] * grouped
        ax.barh(range(len(values)), values, color=colors)
        ax.set_yticks(range(len(labels)), [_short(s) for s in labels])
        ax.invert_yaxis()
        if overall is not None:
            ax.axvline(overall, color=ACCENT, linestyle="--")
            ax.annotate(f"overall {sig(overall)}", xy=(overall, 1.0), xycoords=("data", "axes fraction"),
                        ha="center", va="bottom", color=ACCENT)
        ax.xaxis.set_major_formatter(FuncFormatter(_human))
        ax.set_title(title, pad=16 if overall is not None else 6)
        ax.set_xlabel(xlabel)
        return _svg(fig)


def _short(label: str, n: int = 32) -> str:
    return label if len(label) <= n else "…" + label[-(n - 1):]


def length_histogram(hist: list[dict]) -> str:
    """Samples per token-length bin, on a log length axis."""
    with plt.rc_context(STYLE):
        fig, ax = _figure()
        lo = [max(h["lo"], 0.5) for h in hist]
        ax.bar(lo, [h["count"] for h in hist], width=[h["hi"] - l for h, l in zip(hist, lo)],
               align="edge", color=COLOR, edgecolor="white", linewidth=0.5)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_human))
        ax.set(title="Token length of samples", xlabel="tokens per sample (log scale)", ylabel="samples")
        return _svg(fig)


def series(x: list[float], ys: dict[str, list[float]], *, title: str, xlabel: str, ylabel: str) -> str:
    """Line plot of one or more series over x."""
    with plt.rc_context(STYLE):
        fig, ax = _figure()
        for (name, y), color in zip(ys.items(), (COLOR, ACCENT, "#58a55c", "#8a5fbf")):
            ax.plot(x, y, label=name, color=color, drawstyle="steps-post")
        if len(ys) > 1:
            ax.legend(frameon=False)
        ax.yaxis.set_major_formatter(FuncFormatter(_human))
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.set_ylim(bottom=0)
        return _svg(fig)
