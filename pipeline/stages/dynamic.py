"""Dynamic tokenization: BPE-style merges of frequent adjacent token pairs within a shard or batch.

After "Retrofitting (Large) Language Models with Dynamic Tokenization": new ids start at the
base vocabulary size; id V + i stands for the pair merges[i] of its group. The merge loop
(`merge_kernel`, compiled) is incremental: pair counts and occurrence lists are updated only
around each merge, so a shard costs one sort of its pairs plus work proportional to the tokens
merged, not a recount per merge.
Expansion (`expand_dynamic`, `expand_table`) gives back the base ids exactly.
"""
from __future__ import annotations

import json
from bisect import bisect_right
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.shard import token_dtype
from pipeline.spec import DynamicSpec
from pipeline.stages.base import (Stage, flat_tokens, list_array, put_column, text_layout,
                                  word_internal)

VOCAB_KEY = b"tokenmill.dynamic_vocab"
VOCAB_VERSION = 1


class MergeEngine:
    """Greedy pair merging on one token stream; `blocked[i]` forbids merging tokens i and i+1.

    Picks the pair with the highest count (all occurrences, overlapping ones included), ties to
    the smallest (left, right) pair; applies it left to right without overlaps. The loop is the
    compiled `merge_kernel.greedy_merges`; the pairs are sorted once by numpy beforehand. Ids up
    to base + max_merges must fit int32 (pipeline.spec.check_stages refuses a spec where they do not).
    """

    def __init__(self, seq: np.ndarray, blocked: np.ndarray, base: int, max_merges: int, min_count: int) -> None:
        if len(seq) >= np.iinfo(np.int32).max:
            raise ValueError(f"dynamic: {len(seq):,} tokens in one merge scope is more than the merge loop's "
                             "int32 positions hold; lower source.unit_bytes or use scope: batch")
        self.seq = np.ascontiguousarray(seq, dtype=np.int64)
        self.blocked = np.ascontiguousarray(blocked[: max(len(seq) - 1, 0)], dtype=bool)
        self.base, self.max_merges, self.min_count = base, max_merges, min_count
        self.m = base + max_merges

    def run(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
        """Merge until max_merges or no pair reaches min_count; return (ids, kept mask, merges)."""
        from pipeline.stages.merge_kernel import greedy_merges, sorted_pairs  # numba: only where merging runs
        packed, pos_bits, key_table = sorted_pairs(self.seq, self.blocked, self.m)
        ids, merges = greedy_merges(self.seq, packed, pos_bits, key_table, self.base, self.m,
                                    self.max_merges, self.min_count)
        return ids, ids >= 0, [(int(a), int(b)) for a, b in merges.tolist()]


class DynamicMerge(Stage):
    """The `dynamic` stage: shorter sequences with a per-shard (or per-batch) merge vocabulary."""

    kind = "dynamic"
    spec: DynamicSpec

    def __init__(self, spec: DynamicSpec, ctx: Any, name: str | None = None) -> None:
        super().__init__(spec, ctx, name)
        # load the compiled merge loop now (numba's disk cache, or a one-time compile of ~8 s),
        # so that an actor pays it when it starts, not inside its first shard
        MergeEngine(np.array([1, 2, 1, 2], np.int64), np.zeros(4, bool), 3, 1, 2).run()
        self.walls = _wall_ids(ctx)

    def __call__(self, table: pa.Table) -> pa.Table:
        tokens, offsets = flat_tokens(table)
        if len(tokens) and int(tokens.max()) >= self.ctx.base_vocab_size:
            raise ValueError(f"{self.name}: token id {int(tokens.max())} is not below the base "
                             f"vocabulary size {self.ctx.base_vocab_size}")
        blocked = self._blocked(table, tokens, offsets)
        dtype = dynamic_token_dtype(self.ctx.base_vocab_size, self.spec.max_merges)
        values, keep, groups = [np.zeros(0, dtype)], [np.zeros(0, bool)], []
        for r0, r1 in self._row_groups(table.num_rows):
            t0, t1 = offsets[r0], offsets[r1]
            engine = MergeEngine(tokens[t0:t1], blocked[t0:t1], self.ctx.base_vocab_size,
                                 self.spec.max_merges, self.spec.min_count)
            ids, alive, merges = engine.run()
            values.append(ids[alive].astype(dtype))
            keep.append(alive)
            groups.append({"rows": [r0, r1], "merges": [list(m) for m in merges]})
        merged_away = np.flatnonzero(~np.concatenate(keep))
        new_offsets = offsets - np.searchsorted(merged_away, offsets)
        column = list_array(np.concatenate(values), new_offsets, pa.from_numpy_dtype(np.dtype(dtype)))
        self._record(len(tokens), int(new_offsets[-1]), groups)
        return _with_vocab(put_column(table, "tokens", column), self._vocab(groups))

    def _row_groups(self, n_rows: int) -> list[tuple[int, int]]:
        if self.spec.scope == "shard":
            return [(0, n_rows)]
        step = self.spec.batch_size
        return [(r, min(r + step, n_rows)) for r in range(0, n_rows, step)]

    def _blocked(self, table: pa.Table, tokens: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Pairs never merged: across documents, with EOS, BOS or any special token, and (optionally) across
        words. A merged BOS would vanish into a new id, and readers look for it at each document's start."""
        blocked = np.zeros(len(tokens), bool)
        blocked[offsets[1:][np.diff(offsets) > 0] - 1] = True
        if len(tokens):
            is_wall = self.walls[tokens.astype(np.int64)]
            blocked |= is_wall
            blocked[:-1] |= is_wall[1:]
        if self.spec.within_words:
            blocked |= ~word_internal(text_layout(table, self.ctx, tokens, offsets), offsets)
        return blocked

    def _vocab(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        return {"version": VOCAB_VERSION, "base_vocab_size": self.ctx.base_vocab_size,
                "scope": self.spec.scope, "groups": groups}

    def _record(self, before: int, after: int, groups: list[dict[str, Any]]) -> None:
        sizes = [len(g["merges"]) for g in groups]
        self.stats = {"tokens_before": before, "tokens_after": after,
                      "reduction": round(1 - after / before, 6) if before else 0.0,
                      "dynamic_vocab_size": sum(sizes), "max_group_vocab_size": max(sizes, default=0),
                      "groups": len(groups)}


def _wall_ids(ctx: Any) -> np.ndarray:
    """Per base id: never merged with a neighbour (EOS, and every special token: an id without bytes, which the
    tokenizers give as b"" and the stage context may give as None)."""
    walls = np.zeros(ctx.base_vocab_size, bool)
    if ctx.token_bytes:
        n = min(len(ctx.token_bytes), ctx.base_vocab_size)
        walls[:n] = np.fromiter((not b for b in ctx.token_bytes[:n]), bool, count=n)
    if ctx.eos_id is not None and ctx.eos_id < ctx.base_vocab_size:
        walls[ctx.eos_id] = True
    return walls


def dynamic_token_dtype(base_vocab_size: int, max_merges: int) -> str:
    """Token dtype once up to max_merges new ids sit above the base vocabulary."""
    return token_dtype(base_vocab_size + max_merges)


def _with_vocab(table: pa.Table, vocab: dict[str, Any]) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[VOCAB_KEY] = json.dumps(vocab, separators=(",", ":")).encode()
    return table.replace_schema_metadata(meta)


class DynamicVocab:
    """A shard's dynamic vocabulary: which merges apply to which rows, and their expansions."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.base = int(data["base_vocab_size"])
        self.groups = data["groups"]
        self._row_starts = [g["rows"][0] for g in self.groups]
        self._tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_schema(cls, schema: pa.Schema) -> "DynamicVocab | None":
        """The vocabulary stored in a shard's schema metadata, or None without a dynamic stage."""
        raw = (schema.metadata or {}).get(VOCAB_KEY)
        return cls(json.loads(raw)) if raw else None

    def group_of(self, row: int) -> int:
        return max(bisect_right(self._row_starts, row) - 1, 0)

    def table(self, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat base ids, start, length) of every id's expansion, for ids below base + merges."""
        if group not in self._tables:
            merges = self.groups[group]["merges"] if self.groups else []
            flat = [np.arange(self.base, dtype=np.int64)]
            starts, lens = list(range(self.base)), [1] * self.base
            size = self.base
            for a, b in merges:
                starts.append(size)
                lens.append(lens[a] + lens[b])
                flat.append(np.concatenate([_expansion(flat, a), _expansion(flat, b)]))
                size += lens[-1]
            self._tables[group] = (np.concatenate(flat), np.array(starts, np.int64), np.array(lens, np.int64))
        return self._tables[group]

    def expand(self, tokens: np.ndarray, row: int = 0) -> np.ndarray:
        """Base ids of one row's tokens."""
        return _expand_flat(np.asarray(tokens), *self.table(self.group_of(row))).astype(token_dtype(self.base))

    def lengths(self, tokens: np.ndarray, row: int = 0) -> np.ndarray:
        """How many base tokens each token stands for (to map base-index spans onto dynamic ids)."""
        return self.table(self.group_of(row))[2][np.asarray(tokens, dtype=np.int64)]


def _expansion(flat: list[np.ndarray], tok: int) -> np.ndarray:
    """Expansion of an id while the table is being built (base ids are their own expansion)."""
    if tok < len(flat[0]):
        return flat[0][tok: tok + 1]
    return flat[tok - len(flat[0]) + 1]


def _expand_flat(tokens: np.ndarray, flat: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Vectorized ragged gather: every token replaced by its expansion."""
    t = tokens.astype(np.int64)
    n = lens[t]
    out_start = np.cumsum(n) - n
    return flat[np.repeat(starts[t] - out_start, n) + np.arange(int(n.sum()))]


def expand_dynamic(tokens: np.ndarray, vocab: dict[str, Any], row: int = 0) -> np.ndarray:
    """Base ids of one row's tokens, given the parsed `tokenmill.dynamic_vocab` JSON."""
    return DynamicVocab(vocab).expand(tokens, row)


def expand_table(table: pa.Table) -> pa.Table:
    """The same shard with base ids in `tokens` and the dynamic vocabulary removed from metadata."""
    vocab = DynamicVocab.from_schema(table.schema)
    if vocab is None:
        return table
    tokens, offsets = flat_tokens(table)
    parts, new_offsets = [], [np.zeros(1, np.int64)]
    for g, group in enumerate(vocab.groups):
        r0, r1 = group["rows"]
        lens = vocab.table(g)[2][tokens[offsets[r0]: offsets[r1]].astype(np.int64)]
        parts.append(_expand_flat(tokens[offsets[r0]: offsets[r1]], *vocab.table(g)))
        cum = np.concatenate([[0], np.cumsum(lens)])
        new_offsets.append(cum[offsets[r0 + 1: r1 + 1] - offsets[r0]] + new_offsets[-1][-1])
    dtype = token_dtype(vocab.base)
    values = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    column = list_array(values.astype(dtype), np.concatenate(new_offsets), pa.from_numpy_dtype(np.dtype(dtype)))
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != VOCAB_KEY}
    return put_column(table, "tokens", column).replace_schema_metadata(meta)
