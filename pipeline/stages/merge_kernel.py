"""Compiled greedy pair merging: the inner loop of the dynamic stage (numba, cached on disk).

`greedy_merges` picks the pair with the highest count (every occurrence counts, overlapping ones
in runs like `a a a` included), ties to the smallest (left, right); applies it left to right
without overlaps; repeats until `max_merges` or no pair reaches `min_count`. State:
- tokens in a linked list over positions; one int32 row per position holds its id (-1 once
  merged away), next, previous and slot, so a merge touches one or two cache lines per site;
- one count slot per pair ever seen, with the positions where it occurred (`posbuf`), stale
  entries skipped when the pair is merged; a position's slot is that of the pair starting
  there, -1 where no pair may start (blocked);
- a max-heap of (count, slot) with lazy updates: counts of existing pairs only fall (pairs with
  a new id always get a new slot), so a popped entry whose count is out of date is pushed back
  with its current count, and the first up-to-date entry is the best pair.
A merge costs work proportional to its occurrences, so a shard costs one sort of its pairs
(done by numpy's vectorized sort) plus time linear in the tokens merged.
"""
from __future__ import annotations

import numba
import numpy as np

PENDING = -2  # slot_of of a position whose new pair (it holds or precedes the new id) is not counted yet


TOK, NXT, PRV, SLOT = 0, 1, 2, 3  # columns of the per-position rows
PACK_BITS = 63  # key and position share one int64 when they fit


def sorted_pairs(seq: np.ndarray, blocked: np.ndarray, m: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Every open pair as (key code << pos_bits) | position, sorted; pos_bits; the keys of the codes.

    A pair's key is left * m + right. When key and position fit in 63 bits the code is the key
    itself (empty key table); otherwise it is the key's rank among the distinct keys.
    """
    n1 = max(len(seq) - 1, 0)
    pos_bits = max(1, len(seq).bit_length())
    if (m * m).bit_length() + pos_bits <= PACK_BITS:
        return np.sort(_packed_pairs(seq, blocked, m, pos_bits)), pos_bits, np.zeros(0, np.int64)
    pos = np.flatnonzero(~blocked[:n1])
    table, rank = np.unique(seq[pos] * m + seq[pos + 1], return_inverse=True)
    return np.sort((rank.astype(np.int64) << pos_bits) | pos), pos_bits, table


@numba.njit(cache=True, nogil=True)
def _packed_pairs(seq, blocked, m, pos_bits):  # pragma: no cover - compiled
    n1 = max(len(seq) - 1, 0)
    n_open = 0
    for i in range(n1):
        n_open += not blocked[i]
    out = np.empty(n_open, np.int64)
    j = 0
    for i in range(n1):
        if not blocked[i]:
            out[j] = ((np.int64(seq[i]) * m + seq[i + 1]) << pos_bits) | i
            j += 1
    return out


@numba.njit(cache=True, nogil=True)
def _reserve(arr, used, need):  # pragma: no cover - compiled
    """`arr` with room for `need` items (amortized doubling), keeping the first `used`."""
    if need <= len(arr):
        return arr
    grown = np.empty(max(need, 2 * len(arr)), arr.dtype)
    grown[:used] = arr[:used]
    return grown


@numba.njit(cache=True, nogil=True)
def _above(c1, s1, c2, s2, slot_key):  # pragma: no cover - compiled
    """Heap order: higher count first, then the smaller pair."""
    return c1 > c2 or (c1 == c2 and slot_key[s1] < slot_key[s2])


@numba.njit(cache=True, nogil=True)
def _sift_down(hcnt, hslot, size, i, slot_key):  # pragma: no cover - compiled
    while True:
        best, left, right = i, 2 * i + 1, 2 * i + 2
        if left < size and _above(hcnt[left], hslot[left], hcnt[best], hslot[best], slot_key):
            best = left
        if right < size and _above(hcnt[right], hslot[right], hcnt[best], hslot[best], slot_key):
            best = right
        if best == i:
            return
        hcnt[i], hcnt[best] = hcnt[best], hcnt[i]
        hslot[i], hslot[best] = hslot[best], hslot[i]
        i = best


@numba.njit(cache=True, nogil=True)
def _sift_up(hcnt, hslot, i, slot_key):  # pragma: no cover - compiled
    while i > 0:
        parent = (i - 1) // 2
        if not _above(hcnt[i], hslot[i], hcnt[parent], hslot[parent], slot_key):
            return
        hcnt[i], hcnt[parent] = hcnt[parent], hcnt[i]
        hslot[i], hslot[parent] = hslot[parent], hslot[i]
        i = parent


@numba.njit(cache=True, nogil=True)
def greedy_merges(seq, packed, pos_bits, key_table, base, m, max_merges, min_count):  # pragma: no cover - compiled
    """(ids with -1 where merged away, merges as (k, 2) pairs) for one stream; see the module doc."""
    n = len(seq)
    node = np.empty((n + 1, 4), np.int32)
    for i in range(n):
        node[i, TOK], node[i, NXT], node[i, PRV], node[i, SLOT] = seq[i], i + 1, i - 1, -1
    node[n, TOK], node[n, NXT], node[n, PRV], node[n, SLOT] = -1, n, n - 1, -1  # sentinel at both ends
    if n:
        node[0, PRV] = n

    # one slot per distinct open pair, with its positions in order
    mask = (np.int64(1) << pos_bits) - 1
    n_slots = 0
    for i in range(len(packed)):
        n_slots += i == 0 or (packed[i] >> pos_bits) != (packed[i - 1] >> pos_bits)
    slot_key = np.empty(n_slots + 1024, np.int64)
    slot_cnt = np.zeros(n_slots + 1024, np.int64)
    slot_start = np.empty(n_slots + 1024, np.int64)
    posbuf = np.empty(len(packed) + len(packed) // 2 + 16, np.int32)
    s = -1
    for i in range(len(packed)):
        code = packed[i] >> pos_bits
        if i == 0 or code != (packed[i - 1] >> pos_bits):
            s += 1
            slot_key[s] = key_table[code] if len(key_table) else code
            slot_start[s] = i
        slot_cnt[s] += 1
        posbuf[i] = packed[i] & mask
        node[posbuf[i], SLOT] = s
    slot_len = slot_cnt.copy()
    n_pos = len(packed)

    hcnt = np.empty(n_slots + 1024, np.int64)
    hslot = np.empty(n_slots + 1024, np.int64)
    size = 0
    for s in range(n_slots):
        if slot_cnt[s] >= min_count:
            hcnt[size], hslot[size] = slot_cnt[s], s
            size += 1
    for i in range(size // 2 - 1, -1, -1):
        _sift_down(hcnt, hslot, size, i, slot_key)

    merges = np.empty((max_merges, 2), np.int64)
    pending = np.empty(1024, np.int32)
    bucket_cnt = np.zeros(2 * m, np.int64)  # new pairs per other token: (x, new) at x, (new, y) at m + y
    touched = np.empty(1024, np.int64)
    grouped = np.empty(1024, np.int32)
    k = 0
    while k < max_merges:
        best = -1
        while size > 0:
            top, c = hslot[0], hcnt[0]
            size -= 1
            hcnt[0], hslot[0] = hcnt[size], hslot[size]
            _sift_down(hcnt, hslot, size, 0, slot_key)
            if c == slot_cnt[top]:
                best = top
                break
            if slot_cnt[top] >= min_count:  # out of date: back in with its current count
                hcnt[size], hslot[size] = slot_cnt[top], top
                _sift_up(hcnt, hslot, size, slot_key)
                size += 1
        if best < 0:
            break
        a, b = slot_key[best] // m, slot_key[best] % m
        new_id = base + k

        # pass 1: relink every current occurrence, left to right; uncount the pairs it breaks
        n_pending = 0
        pending = _reserve(pending, 0, 2 * slot_len[best])  # each site queues at most itself and its left
        for j in range(slot_start[best], slot_start[best] + slot_len[best]):
            p = posbuf[j]
            if node[p, TOK] != a:
                continue
            q = node[p, NXT]
            if node[q, TOK] != b:  # stale entry, or the second of a run's pair (a a a) already taken
                continue
            left, right = node[p, PRV], node[q, NXT]
            slot_cnt[best] -= 1
            q_slot = node[q, SLOT]
            if q_slot >= 0:
                slot_cnt[q_slot] -= 1
            left_slot = node[left, SLOT]
            if left_slot >= 0:  # PENDING: chained (a b a b), its new pair is already due
                slot_cnt[left_slot] -= 1
                node[left, SLOT] = PENDING
                pending[n_pending] = left
                n_pending += 1
            node[p, TOK], node[q, TOK], node[q, SLOT] = new_id, -1, -1
            node[p, NXT], node[right, PRV] = right, p
            if q_slot >= 0:
                node[p, SLOT] = PENDING
                pending[n_pending] = p
                n_pending += 1
            else:  # q's right edge was blocked, so the merged token's is
                node[p, SLOT] = -1

        # pass 2: the new pairs (each holds new_id, so each is new), grouped by the other token;
        # a stable counting sort keeps each group's positions in order
        touched = _reserve(touched, 0, n_pending)
        grouped = _reserve(grouped, 0, n_pending)
        n_touched = 0
        for i in range(n_pending):
            x = pending[i]
            first, second = node[x, TOK], node[node[x, NXT], TOK]
            g = m + second if first == new_id else first
            if bucket_cnt[g] == 0:
                touched[n_touched] = g
                n_touched += 1
            bucket_cnt[g] += 1
        at = 0
        for t in range(n_touched):  # counts become start offsets
            g = touched[t]
            at, bucket_cnt[g] = at + bucket_cnt[g], at
        for i in range(n_pending):
            x = pending[i]
            first, second = node[x, TOK], node[node[x, NXT], TOK]
            g = m + second if first == new_id else first
            grouped[bucket_cnt[g]] = x
            bucket_cnt[g] += 1
        posbuf = _reserve(posbuf, n_pos, n_pos + n_pending)
        if n_slots + n_touched > len(slot_key):
            slot_key = _reserve(slot_key, n_slots, n_slots + n_touched)
            slot_cnt = _reserve(slot_cnt, n_slots, n_slots + n_touched)
            slot_start = _reserve(slot_start, n_slots, n_slots + n_touched)
            slot_len = _reserve(slot_len, n_slots, n_slots + n_touched)
        hcnt = _reserve(hcnt, size, size + n_touched)
        hslot = _reserve(hslot, size, size + n_touched)
        lo = 0
        for t in range(n_touched):
            g = touched[t]
            hi = bucket_cnt[g]  # the group's end after placing
            bucket_cnt[g] = 0
            s = n_slots
            n_slots += 1
            slot_key[s] = new_id * m + (g - m) if g >= m else g * m + new_id
            slot_cnt[s], slot_len[s], slot_start[s] = hi - lo, hi - lo, n_pos
            for i in range(lo, hi):
                posbuf[n_pos] = grouped[i]
                n_pos += 1
                node[grouped[i], SLOT] = s
            if hi - lo >= min_count:
                hcnt[size], hslot[size] = hi - lo, s
                _sift_up(hcnt, hslot, size, slot_key)
                size += 1
            lo = hi
        merges[k, 0], merges[k, 1] = a, b
        k += 1
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = node[i, TOK]
    return out, merges[:k]
