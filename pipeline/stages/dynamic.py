"""Dynamic tokenization: BPE-style merges of frequent adjacent token pairs within a shard or batch.

After "Retrofitting (Large) Language Models with Dynamic Tokenization": new ids start at the
base vocabulary size; id V + i stands for the pair merges[i] of its group. The merge loop is
incremental (pair counts and occurrence lists are updated only around each merge), so a shard
costs one sort of its pairs plus work proportional to the tokens merged, not a recount per merge.
Expansion (`expand_dynamic`, `expand_table`) gives back the base ids exactly.
"""
from __future__ import annotations

import json
from bisect import bisect_right
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.spec import DynamicSpec
from pipeline.stages.base import Stage, flat_tokens, list_array, put_column, text_layout, token_dtype, word_internal

VOCAB_KEY = b"tokenmill.dynamic_vocab"
VOCAB_VERSION = 1


class _Grow:
    """A numpy array with amortized O(1) appends (the slot and position tables grow per merge)."""

    def __init__(self, init: np.ndarray) -> None:
        self.buf = init  # taken over, not copied: callers hand in fresh arrays
        self.n = len(init)

    def append(self, more: np.ndarray) -> None:
        need = self.n + len(more)
        if need > len(self.buf):
            grown = np.empty(max(need, 2 * len(self.buf), 16), dtype=self.buf.dtype)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
        self.buf[self.n: need] = more
        self.n = need

    @property
    def view(self) -> np.ndarray:
        return self.buf[: self.n]


def _group(keys: np.ndarray, pos: np.ndarray, pos_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort positions by (key, position): unique keys, their counts, sorted positions, group of each."""
    if keys.size and int(keys.max()).bit_length() + pos_bits <= 63:
        packed = np.sort((keys << pos_bits) | pos)  # one SIMD sort instead of a slow argsort
        skeys, spos = packed >> pos_bits, packed & ((1 << pos_bits) - 1)
    else:
        order = np.lexsort((pos, keys))
        skeys, spos = keys[order], pos[order]
    first = np.ones(len(skeys), dtype=bool)
    first[1:] = skeys[1:] != skeys[:-1]
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, len(skeys)))
    return skeys[starts], counts, spos, np.cumsum(first) - 1


class MergeEngine:
    """Greedy pair merging on one token stream; `blocked[i]` forbids merging tokens i and i+1.

    Picks the pair with the highest count (all occurrences, overlapping ones included), ties to
    the smallest (left, right) pair; applies it left to right without overlaps. Tokens live in a
    linked list (merged-away positions get id -1); `slot_of[i]` is the count slot of the pair
    starting at position i, or -1 where no pair may start (blocked), so one lookup serves both.
    """

    def __init__(self, seq: np.ndarray, blocked: np.ndarray, base: int, max_merges: int, min_count: int) -> None:
        n = len(seq)
        self.n, self.base, self.max_merges, self.min_count = n, base, max_merges, min_count
        self.m = base + max_merges
        self.pos_bits = max(1, (n + 1).bit_length())
        # ids as int64 so keys need no cast; links as intp, the index type numpy gathers with
        self.seq = np.append(seq.astype(np.int64), -1)
        self.nxt = np.arange(1, n + 2, dtype=np.intp)
        self.nxt[n] = n
        self.prv = np.arange(-1, n, dtype=np.intp)
        self.prv[0] = n
        self.slot_of = np.full(n + 1, -1, dtype=np.int64)
        self.merges: list[tuple[int, int]] = []
        self._init_slots(blocked[: max(n - 1, 0)])

    def _init_slots(self, blocked: np.ndarray) -> None:
        """Every pair position sorted by (pair, position) once; blocked ones sort last and are cut."""
        n1, wall = len(blocked), self.m * self.m
        keys = self.seq[:n1] * self.m + self.seq[1: n1 + 1]
        keys[blocked] = wall
        ukeys, counts, spos, group = _group(keys, np.arange(n1), self.pos_bits)
        if len(ukeys) and ukeys[-1] == wall:
            ukeys, counts = ukeys[:-1], counts[:-1]
            spos, group = spos[: n1 - int(blocked.sum())], group[: n1 - int(blocked.sum())]
        self.slot_of[spos] = group
        self.slot_pair, self.slot_cnt = _Grow(ukeys), _Grow(counts)
        self.slot_start, self.slot_len = _Grow(np.cumsum(counts) - counts), _Grow(counts.copy())
        self.posbuf = _Grow(spos)
        self.cand, self.tau = np.zeros(0, np.int64), 0

    def run(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
        """Merge until max_merges or no pair reaches min_count; return (ids, kept mask, merges)."""
        while len(self.merges) < self.max_merges:
            slot = self._best()
            if slot is None:
                break
            self._merge(slot, self.base + len(self.merges))
            if len(self.merges) % 64 == 0:
                self.cand = self.cand[self.slot_cnt.buf[self.cand] >= self.tau]
        seq = self.seq[: self.n]
        return seq, seq >= 0, self.merges

    def _best(self) -> int | None:
        """Slot of the best pair. Counts only fall once a pair exists, so every slot outside the
        candidates stays below tau, and the best candidate is the global best while it reaches tau."""
        cnt = self.slot_cnt.buf
        if len(self.cand):
            c = cnt[self.cand]
            top = c.max()
            if top >= self.tau:
                tied = self.cand[c == top]
                return int(tied[np.argmin(self.slot_pair.buf[tied])])
        live = self.slot_cnt.view
        if not len(live) or live.max() < self.min_count:
            return None
        k = min(len(live), 4 * (self.max_merges - len(self.merges)) + 256)
        self.tau = max(self.min_count, int(np.partition(live, len(live) - k)[len(live) - k]))
        self.cand = np.flatnonzero(live >= self.tau)
        return self._best()

    def _occurrences(self, slot: int, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Current, non-overlapping positions p of the pair (a, b), left to right, and q = next(p)."""
        start = self.slot_start.buf[slot]
        pos = self.posbuf.buf[start: start + self.slot_len.buf[slot]]
        pos = pos[self.seq[pos] == a]  # drop stale entries: either side may have changed
        q = self.nxt[pos]
        ok = self.seq[q] == b
        pos, q = pos[ok], q[ok]
        if a == b and len(pos) > 1:  # runs like a a a: merge the 1st, 3rd, ... pair of each run
            link = np.zeros(len(pos), bool)
            link[1:] = q[:-1] == pos[1:]
            run_start = np.flatnonzero(~link)
            even = (np.arange(len(pos)) - run_start[np.cumsum(~link) - 1]) % 2 == 0
            pos, q = pos[even], q[even]
        return pos, q

    def _merge(self, slot: int, new_id: int) -> None:
        """Replace (a, b) by new_id; the pairs at p, at its left neighbour and at q change."""
        a, b = divmod(int(self.slot_pair.buf[slot]), self.m)
        p, q = self._occurrences(slot, a, b)
        seq, nxt, prv, slot_of, cnt = self.seq, self.nxt, self.prv, self.slot_of, self.slot_cnt.buf
        left, right = prv[p], nxt[q]
        q_slot, left_slot = slot_of[q], slot_of[left]
        chained = np.zeros(len(p), bool)  # a b a b: the left neighbour of one is the q of the last
        chained[1:] = left[1:] == q[:-1]
        open_q, open_left = q_slot >= 0, ~chained & (left_slot >= 0)
        cnt[slot] -= len(p)  # every p held this pair; overlapping ones (a a a) sit at some q
        np.subtract.at(cnt, np.concatenate([q_slot[open_q], left_slot[open_left]]), 1)
        seq[p], seq[q], nxt[p], prv[right] = new_id, -1, right, p
        slot_of[p[~open_q]] = -1  # q's right edge was blocked, so the merged token's is
        # new pairs: (new_id, token after) at p, (token before, new_id) at its left neighbour
        left = left[open_left]
        made = np.concatenate([p[open_q], left])
        keys = np.concatenate([new_id * self.m + seq[right[open_q]], seq[left] * self.m + new_id])
        self._add_block(keys, made)
        self.merges.append((a, b))

    def _add_block(self, keys: np.ndarray, pos: np.ndarray) -> None:
        """Record the pairs that contain the new id: all of them are new pairs."""
        ukeys, counts, spos, group = _group(keys, pos, self.pos_bits)
        first_slot = self.slot_cnt.n
        self.slot_of[spos] = group + first_slot
        self.slot_pair.append(ukeys)
        self.slot_cnt.append(counts)
        self.slot_start.append(self.posbuf.n + np.cumsum(counts) - counts)
        self.slot_len.append(counts)
        self.posbuf.append(spos)
        hot = np.flatnonzero(counts >= self.tau) + first_slot
        if len(hot):
            self.cand = np.concatenate([self.cand, hot])


class DynamicMerge(Stage):
    """The `dynamic` stage: shorter sequences with a per-shard (or per-batch) merge vocabulary."""

    kind = "dynamic"
    spec: DynamicSpec

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
        """Pairs never merged: across documents, into the EOS token, and (optionally) across words."""
        blocked = np.zeros(len(tokens), bool)
        blocked[offsets[1:][np.diff(offsets) > 0] - 1] = True
        if self.ctx.eos_id is not None and len(tokens):
            is_eos = tokens == self.ctx.eos_id
            blocked |= is_eos
            blocked[:-1] |= is_eos[1:]
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


def dynamic_token_dtype(base_vocab_size: int, max_merges: int) -> str:
    """Token dtype once up to max_merges new ids sit above the base vocabulary."""
    return token_dtype(base_vocab_size + max_merges - 1)


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
        return _expand_flat(np.asarray(tokens), *self.table(self.group_of(row))).astype(token_dtype(self.base - 1))

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
    dtype = token_dtype(vocab.base - 1)
    values = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    column = list_array(values.astype(dtype), np.concatenate(new_offsets), pa.from_numpy_dtype(np.dtype(dtype)))
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != VOCAB_KEY}
    return put_column(table, "tokens", column).replace_schema_metadata(meta)
