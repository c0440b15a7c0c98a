"""What every stage shares: the context it is built with, the Stage class, and Arrow/text helpers.

Stages work on one shard at a time as flat numpy arrays (token values + offsets), never on
Python lists of lists; text positions are byte offsets into the UTF-8 of the `_text` column,
found from each token's byte length (cumulative sums), so no re-tokenization is needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TEXT_COLUMN = "_text"
SPACE, WORD, PUNCT = 0, 1, 2


@dataclass(frozen=True)
class StageContext:
    """What a stage may know about the tokenizer that produced the shard."""

    modality: str
    base_vocab_size: int
    eos_id: int | None = None
    token_bytes: list[bytes | None] | None = None
    codebook: np.ndarray | None = None


class Stage:
    """A post-tokenization step: `__call__(table) -> table`, counters of the last call in `stats`."""

    kind = ""

    def __init__(self, spec: Any, ctx: StageContext, name: str | None = None) -> None:
        self.spec = spec
        self.ctx = ctx
        self.name = name or self.kind
        self.stats: dict[str, Any] = {}

    def __call__(self, table: pa.Table) -> pa.Table:
        raise NotImplementedError


class GridStage(Stage):
    """A stage that keeps a subset of each row's grid tokens (prune, temporal), positions recorded."""

    def __call__(self, table: pa.Table) -> pa.Table:
        tokens, offsets = flat_tokens(table)
        positions = grid_positions(table, offsets)
        keep = np.ones(len(tokens), bool)
        for row, shape in enumerate(row_shapes(table)):
            t0, t1 = offsets[row], offsets[row + 1]
            keep[t0:t1] = self._keep_row(tokens[t0:t1], positions[t0:t1], shape)
        self.stats = reduction_stats(len(tokens), int(keep.sum()))
        return select_rows(table, tokens, positions, offsets, keep)

    def _keep_row(self, tokens: np.ndarray, positions: np.ndarray, shape: list[int]) -> np.ndarray:
        """Which of one row's tokens to keep (a bool mask)."""
        raise NotImplementedError


# ---- Arrow <-> flat numpy --------------------------------------------------------------

def flat_tokens(table: pa.Table, column: str = "tokens") -> tuple[np.ndarray, np.ndarray]:
    """The list column as (values, int64 offsets of length n_rows + 1)."""
    col = table.column(column).combine_chunks() if table.num_rows else pa.array([], pa.list_(pa.uint32()))
    lengths = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False)
    return values, offsets


def list_array(values: np.ndarray, offsets: np.ndarray, dtype: pa.DataType) -> pa.Array:
    """A list<dtype> column from flat values and offsets."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values, type=dtype))


def span_array(starts: np.ndarray, ends: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """The `spans` column: list<struct<start: int32, end: int32>> from flat starts/ends."""
    structs = pa.StructArray.from_arrays(
        [pa.array(starts.astype(np.int32)), pa.array(ends.astype(np.int32))], names=["start", "end"])
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), structs)


def put_column(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    """Replace or append a column, keeping the schema metadata."""
    i = table.schema.get_field_index(name)
    if i < 0:
        return table.append_column(name, column)
    return table.set_column(i, name, column)


def row_shapes(table: pa.Table) -> list[list[int]]:
    """The `shape` column as Python lists (one small list per row)."""
    return table.column("shape").to_pylist()


# ---- text alignment ----------------------------------------------------------------------

@dataclass
class TextLayout:
    """Byte layout of a shard's texts and where each token ends in them."""

    data: np.ndarray        # uint8: all documents' UTF-8 back to back
    doc_start: np.ndarray   # int64 [n_rows + 1]: byte offset of each document in data
    classes: np.ndarray     # uint8 per byte: SPACE, WORD or PUNCT of the character it belongs to
    tok_end: np.ndarray     # int64 per token: byte offset in data just after the token
    aligned: np.ndarray     # bool per row: token bytes add up to exactly the document's text


def text_layout(table: pa.Table, ctx: StageContext, tokens: np.ndarray, offsets: np.ndarray) -> TextLayout:
    """Align tokens with the `_text` column via cumulative token byte lengths."""
    if TEXT_COLUMN not in table.column_names:
        raise ValueError(f"the table has no {TEXT_COLUMN} column; text stages need the tokenized text")
    if ctx.token_bytes is None:
        raise ValueError("text stages need StageContext.token_bytes")
    data, doc_start = _text_bytes(table.column(TEXT_COLUMN))
    lens = token_lengths(ctx)[tokens.astype(np.int64)]
    cum = np.concatenate([[0], np.cumsum(lens)])
    within = cum[1:] - np.repeat(cum[offsets[:-1]], np.diff(offsets))
    aligned = cum[offsets[1:]] - cum[offsets[:-1]] == np.diff(doc_start)
    row_of_token = np.repeat(np.arange(len(aligned)), np.diff(offsets))
    # Unaligned rows get all their tokens at their start: monotonic, and never matched to words.
    tok_end = np.where(aligned[row_of_token], within, 0) + doc_start[:-1][row_of_token]
    return TextLayout(data, doc_start, byte_classes(data), tok_end, aligned)


def token_lengths(ctx: StageContext) -> np.ndarray:
    """Byte length of each base id; EOS and special tokens (None) count as zero bytes."""
    lens = np.fromiter((len(b) if b is not None else 0 for b in ctx.token_bytes),
                       dtype=np.int64, count=len(ctx.token_bytes))
    if ctx.eos_id is not None and ctx.eos_id < len(lens):
        lens[ctx.eos_id] = 0
    return lens


def _text_bytes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string column and each row's start offset, without copying rows."""
    arr = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    arr = arr.cast(pa.large_string())
    if len(arr) == 0:
        return np.zeros(0, np.uint8), np.zeros(1, np.int64)
    off_buf, data_buf = arr.buffers()[1], arr.buffers()[2]
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    data = data[offsets[0]: offsets[-1]]
    return data, (offsets - offsets[0]).astype(np.int64)


_BYTE_CLASS = np.array([SPACE if chr(c).isspace() else WORD if (chr(c).isalnum() or c == 95) else PUNCT
                        for c in range(128)] + [WORD] * 128, dtype=np.uint8)


def byte_classes(data: np.ndarray) -> np.ndarray:
    """SPACE/WORD/PUNCT for every byte, from the Unicode class of the character it is part of."""
    classes = _BYTE_CLASS[data]
    high = np.flatnonzero(data >= 0x80)
    if not len(high):
        return classes
    is_lead = data[high] >= 0xC0
    uniq, inverse = np.unique(_code_points(data, high[is_lead]), return_inverse=True)
    lut = np.array([_char_class(int(c)) for c in uniq], dtype=np.uint8)
    classes[high] = lut[inverse][np.cumsum(is_lead) - 1]  # continuation bytes follow their lead byte
    return classes


def _char_class(cp: int) -> int:
    ch = chr(cp)
    return SPACE if ch.isspace() else WORD if (ch.isalnum() or ch == "_") else PUNCT


def _code_points(data: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Decode the code point at each UTF-8 lead byte (the text is valid UTF-8)."""
    padded = np.concatenate([data, np.zeros(3, np.uint8)])  # widened after the gather: a unit's whole text as
    b0, b1, b2, b3 = (padded[starts + k].astype(np.int64) for k in range(4))  # int64 took 0.29 s of a 10 MB unit
    cont = lambda b: b & 0x3F  # noqa: E731
    return np.select(
        [b0 < 0x80, b0 < 0xE0, b0 < 0xF0],
        [b0, ((b0 & 0x1F) << 6) | cont(b1), ((b0 & 0x0F) << 12) | (cont(b1) << 6) | cont(b2)],
        ((b0 & 0x07) << 18) | (cont(b1) << 12) | (cont(b2) << 6) | cont(b3))


def word_internal(layout: TextLayout, offsets: np.ndarray) -> np.ndarray:
    """Per token: True where the boundary after it lies inside one word or punctuation run."""
    end = layout.tok_end
    row = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    inside = (end > layout.doc_start[row]) & (end < layout.doc_start[row + 1])
    # `inside` guarantees 0 < end < len(classes) wherever it is True; clip only keeps indices valid
    cls = np.append(layout.classes, SPACE)
    left, right = cls[np.clip(end - 1, 0, len(cls) - 1)], cls[np.clip(end, 0, len(cls) - 1)]
    return inside & (left == right) & (left != SPACE) & layout.aligned[row]


def tokens_covering(layout: TextLayout, byte_start: np.ndarray, byte_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global token index range [first, last + 1) of the tokens overlapping each byte range."""
    first = np.searchsorted(layout.tok_end, byte_start, side="right")
    last = np.searchsorted(layout.tok_end, byte_end, side="left")
    return first, last + 1


# ---- grids (image and video tokens) ------------------------------------------------------------

def grid_positions(table: pa.Table, offsets: np.ndarray) -> np.ndarray:
    """Flat grid index of every token: the `positions` column when an earlier stage set it, else 0..n-1."""
    if "positions" in table.column_names:
        return flat_tokens(table, "positions")[0].astype(np.int64)
    return np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], np.diff(offsets))


def select_rows(table: pa.Table, tokens: np.ndarray, positions: np.ndarray, offsets: np.ndarray,
                keep: np.ndarray) -> pa.Table:
    """Keep the tokens where `keep` is True, with their grid `positions`, in the original dtype."""
    kept = np.concatenate([[0], np.cumsum(keep)])[offsets]
    dtype = table.schema.field("tokens").type.value_type
    table = put_column(table, "tokens", list_array(tokens[keep], kept, dtype))
    return put_column(table, "positions", list_array(positions[keep].astype(np.int32), kept, pa.int32()))


def reduction_stats(before: int, after: int) -> dict[str, Any]:
    """tokens_before, tokens_after and the fraction removed."""
    return {"tokens_before": before, "tokens_after": after,
            "reduction": round(1 - after / before, 6) if before else 0.0}
