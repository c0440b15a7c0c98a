"""The dynamic stage: exact greedy merges (checked against a naive recount), lossless, deterministic."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.spec import DynamicSpec
from pipeline.stages import StageContext, build_stages, expand_dynamic, expand_table, stage_token_dtype
from pipeline.stages.dynamic import VOCAB_KEY, DynamicVocab, MergeEngine
from tests.stages.helpers import STDLIB, make_table, rows


def run_dynamic(table: pa.Table, vocab_size: int, eos_id: int | None = None, token_bytes=None, **kw):
    ctx = StageContext(modality="code", base_vocab_size=vocab_size, eos_id=eos_id, token_bytes=token_bytes)
    (stage,) = build_stages([DynamicSpec(kind="dynamic", **kw)], ctx)
    return stage(table), stage


def naive_merges(seq: list[int], blocked: list[bool], base: int, max_merges: int, min_count: int):
    """Reference: recount every pair before each merge, apply it left to right without overlaps."""
    seq, blocked, merges = list(seq), list(blocked), []
    while len(merges) < max_merges:
        counts: dict[tuple[int, int], int] = {}
        for i in range(len(seq) - 1):
            if not blocked[i]:
                counts[(seq[i], seq[i + 1])] = counts.get((seq[i], seq[i + 1]), 0) + 1
        if not counts or max(counts.values()) < min_count:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        new, out, out_blocked, i = base + len(merges), [], [], 0
        while i < len(seq):
            if i + 1 < len(seq) and not blocked[i] and (seq[i], seq[i + 1]) == pair:
                out.append(new)
                out_blocked.append(blocked[i + 1])
                i += 2
            else:
                out.append(seq[i])
                out_blocked.append(blocked[i])
                i += 1
        seq, blocked = out, out_blocked
        merges.append(pair)
    return seq, merges


streams = st.lists(st.integers(0, 5), min_size=0, max_size=120)


@settings(max_examples=150, deadline=None)
@given(seq=streams, cut=st.lists(st.booleans(), min_size=120, max_size=120),
       max_merges=st.integers(0, 12), min_count=st.integers(2, 4))
def test_engine_matches_naive_recount(seq, cut, max_merges, min_count):
    blocked = cut[: len(seq)]
    if seq:
        blocked[-1] = True
    ids, keep, merges = MergeEngine(np.array(seq, np.int64), np.array(blocked, bool), 6, max_merges,
                                    min_count).run()
    want_seq, want_merges = naive_merges(seq, blocked, 6, max_merges, min_count)
    assert merges == want_merges
    assert ids[keep].tolist() == want_seq


@settings(max_examples=100, deadline=None)
@given(docs=st.lists(st.lists(st.integers(0, 7), max_size=60), min_size=1, max_size=8),
       scope=st.sampled_from(["shard", "batch"]), batch_size=st.integers(1, 4))
def test_expansion_is_lossless_on_random_streams(docs, scope, batch_size):
    out, stage = run_dynamic(make_table(docs), 8, eos_id=7, max_merges=20, scope=scope, batch_size=batch_size)
    vocab = json.loads(out.schema.metadata[VOCAB_KEY])
    got = rows(out)
    for r, doc in enumerate(docs):
        assert expand_dynamic(np.array(got[r]), vocab, row=r).tolist() == doc
        assert len(got[r]) <= len(doc)
    assert rows(expand_table(out)) == docs
    assert stage.stats["tokens_before"] == sum(map(len, docs))
    assert stage.stats["tokens_after"] == sum(map(len, got))


def test_ties_go_to_the_smallest_pair_and_runs_are_deterministic():
    docs = [[1, 2, 1, 2, 3, 4, 3, 4]]
    out, stage = run_dynamic(make_table(docs), 10, max_merges=1)
    assert json.loads(out.schema.metadata[VOCAB_KEY])["groups"][0]["merges"] == [[1, 2]]
    assert rows(out) == [[10, 10, 3, 4, 3, 4]]
    again, _ = run_dynamic(make_table(docs), 10, max_merges=1)
    assert again.equals(out) and again.schema.metadata == out.schema.metadata


def test_runs_of_one_token_merge_left_to_right():
    out, _ = run_dynamic(make_table([[5, 5, 5, 5, 5]]), 6, max_merges=2)
    assert rows(out) == [[6, 6, 5]]
    assert json.loads(out.schema.metadata[VOCAB_KEY])["groups"][0]["merges"] == [[5, 5]]


def test_no_merge_across_documents_or_into_eos():
    docs = [[1, 2, 0], [1, 2, 0], [2, 1, 2, 0]]
    out, _ = run_dynamic(make_table(docs), 5, eos_id=0, max_merges=10)
    merges = json.loads(out.schema.metadata[VOCAB_KEY])["groups"][0]["merges"]
    assert merges == [[1, 2]]  # (2, 0) and (0, 1) never count: EOS and document ends are walls
    assert rows(out) == [[5, 0], [5, 0], [2, 5, 0]]


def test_no_merge_with_bos_or_any_special_token():
    """Id 4 has no bytes (a special token: BOS here). (4, 1) is as frequent as (1, 2), and after the first merge
    (4, 5) would be the top pair: BOS must stay the first token of each document, and 3 (a special spelled
    inside the text) merges with nothing either."""
    token_bytes = [b"", b"b", b"c", b"", b"", b"e"]  # as the tokenizers give them: b"" for EOS and specials
    docs = [[4, 1, 2, 0], [4, 1, 2, 0], [4, 1, 2, 3, 1, 2, 0]]
    out, _ = run_dynamic(make_table(docs), 6, eos_id=0, token_bytes=token_bytes, max_merges=10)
    merges = json.loads(out.schema.metadata[VOCAB_KEY])["groups"][0]["merges"]
    assert merges == [[1, 2]]
    assert rows(out) == [[4, 6, 0], [4, 6, 0], [4, 6, 3, 6, 0]]
    assert rows(expand_table(out)) == docs


def test_a_real_tokenizers_specials_are_walls(bpe_tokenizer):
    """With the bytes a real tokenizer gives (pipeline.tokenizers: b"" for its special tokens), every special id,
    EOS included, is a wall, and no other id is."""
    from pipeline.spec import TokenizerSpec
    from pipeline.stages.dynamic import _wall_ids
    from pipeline.tokenizers import build_tokenizer
    tok = build_tokenizer(TokenizerSpec(kind="hf", path=str(bpe_tokenizer)))
    token_bytes = tok.token_bytes()
    walls = _wall_ids(StageContext(modality="text", base_vocab_size=tok.vocab_size, eos_id=tok.eos_id,
                                   token_bytes=token_bytes))
    specials = [i for i, b in enumerate(token_bytes) if not b]
    assert tok.eos_id in specials and walls[specials].all() and walls.sum() == len(specials)


def test_empty_and_one_token_documents_pass_through():
    docs = [[], [3], [1, 2, 1, 2], [], [4]]
    table = make_table(docs)
    out, stage = run_dynamic(table, 8, max_merges=4)
    got = rows(out)
    assert got[0] == [] and got[1] == [3] and got[3] == [] and got[4] == [4]
    assert got[2] == [8, 8]
    assert out.num_rows == table.num_rows and out.column("id").equals(table.column("id"))
    assert out.schema.metadata[b"tokenmill.format_version"] == b"1"
    assert stage.stats["dynamic_vocab_size"] == 1


def test_min_count_stops_merging():
    out, stage = run_dynamic(make_table([[1, 2, 1, 2, 3, 4]]), 5, max_merges=10, min_count=3)
    assert rows(out) == [[1, 2, 1, 2, 3, 4]] and stage.stats["dynamic_vocab_size"] == 0


def test_batch_scope_has_one_vocabulary_per_batch():
    docs = [[1, 2, 1, 2], [1, 2], [3, 4, 3, 4], [3, 4]]
    out, stage = run_dynamic(make_table(docs), 5, max_merges=1, scope="batch", batch_size=2)
    vocab = json.loads(out.schema.metadata[VOCAB_KEY])
    assert [g["rows"] for g in vocab["groups"]] == [[0, 2], [2, 4]]
    assert [g["merges"] for g in vocab["groups"]] == [[[1, 2]], [[3, 4]]]
    assert rows(out) == [[5, 5], [5], [5, 5], [5]]  # id 5 means different pairs in the two batches
    assert rows(expand_table(out)) == docs and stage.stats["groups"] == 2


def test_dtype_widens_instead_of_wrapping():
    base = 65530
    docs = [[i % 3 + 1 for i in range(200)], list(range(1, 40)) * 4]
    assert stage_token_dtype(base, [DynamicSpec(kind="dynamic", max_merges=6)]) == "uint16"
    assert stage_token_dtype(base, [DynamicSpec(kind="dynamic", max_merges=7)]) == "uint32"
    out, stage = run_dynamic(make_table(docs), base, max_merges=64)
    assert out.schema.field("tokens").type == pa.list_(pa.uint32())
    flat = np.concatenate([np.array(r) for r in rows(out)])
    assert stage.stats["dynamic_vocab_size"] > 6 and flat.max() > 65535
    assert rows(expand_table(out)) == docs
    assert expand_table(out).schema.field("tokens").type == pa.list_(pa.uint16())


def test_within_words_never_joins_across_a_word_boundary():
    pieces = [b"foo", b"bar", b" ", b"(", b")", b"==", b"<eos>"]
    text = "foobar (foobar) foobar==foobar foo bar"
    tokens = [0, 1, 2, 3, 0, 1, 4, 2, 0, 1, 5, 0, 1, 2, 0, 2, 1, 6]
    assert b"".join(pieces[t] for t in tokens[:-1]) == text.encode()
    out, _ = run_dynamic(make_table([tokens], [text]), 7, eos_id=6, token_bytes=pieces,
                         max_merges=10, within_words=True)
    merges = json.loads(out.schema.metadata[VOCAB_KEY])["groups"][0]["merges"]
    assert merges == [[0, 1]]  # foo+bar (4 times); ") ", " foo", "bar " etc. cross boundaries
    assert rows(expand_table(out)) == [tokens]


def test_real_code_round_trips_and_shrinks(stdlib_bpe):
    paths = sorted((STDLIB / "json").glob("*.py")) + sorted((STDLIB / "unittest" / "test").glob("test_*.py"))[8:12]
    table = stdlib_bpe.table(paths)
    base = rows(table)
    for spec in ({"max_merges": 512, "scope": "shard"}, {"max_merges": 256, "within_words": True},
                 {"max_merges": 128, "scope": "batch", "batch_size": 3}):
        out, stage = run_dynamic(table, stdlib_bpe.vocab_size, stdlib_bpe.eos_id, stdlib_bpe.token_bytes, **spec)
        expanded = rows(expand_table(out))
        assert expanded == base, spec
        for path, ids in zip(paths, expanded):
            assert stdlib_bpe.tokenizer.decode(ids[:-1]) == path.read_text(encoding="utf-8")
        assert stage.stats["tokens_after"] < 0.9 * stage.stats["tokens_before"], (spec, stage.stats)
        vocab = DynamicVocab.from_schema(out.schema)
        assert sum(vocab.lengths(np.array(r), row=i).sum() for i, r in enumerate(rows(out))) == len(
            np.concatenate(base))


@settings(max_examples=40, deadline=None)
@given(seq=streams, max_merges=st.integers(0, 8))
def test_wide_keys_take_the_rank_path_with_the_same_result(seq, max_merges):
    """Keys too wide to share an int64 with the position are ranked first; the merges must not change."""
    from pipeline.stages import merge_kernel
    blocked = [False] * len(seq)
    if seq:
        blocked[-1] = True
    want = MergeEngine(np.array(seq, np.int64), np.array(blocked, bool), 6, max_merges, 2).run()
    saved, merge_kernel.PACK_BITS = merge_kernel.PACK_BITS, 0
    try:
        got = MergeEngine(np.array(seq, np.int64), np.array(blocked, bool), 6, max_merges, 2).run()
    finally:
        merge_kernel.PACK_BITS = saved
    assert got[2] == want[2] and got[0].tolist() == want[0].tolist()


def test_ids_beyond_int32_are_refused_before_any_work():
    import pytest

    from pipeline.spec import SpecError
    with pytest.raises(SpecError, match="max_merges"):
        run_dynamic(make_table([[1, 2]]), 2**31 - 10, max_merges=100)


def test_a_scope_beyond_int32_positions_is_refused_with_the_fix():
    import pytest
    huge = np.broadcast_to(np.zeros(1, np.int64), (2**31,))  # no memory: a zero-stride view
    with pytest.raises(ValueError, match="unit_bytes or use scope: batch"):
        MergeEngine(huge, np.broadcast_to(np.zeros(1, bool), (2**31,)), 6, 4, 2)


def test_engine_matches_naive_recount_where_its_buffers_grow():
    """Streams big enough that the pending list, the slot tables and the heap outgrow their first size."""
    rng = np.random.default_rng(7)
    cases = [(rng.integers(0, 2, 4000), 12),  # ~1,000 sites per pair: pending outgrows 1,024
             (np.minimum(rng.zipf(1.3, 6000), 40) - 1, 80)]  # many new pairs: slots and heap grow
    for seq, max_merges in cases:
        blocked = rng.random(len(seq)) < 0.02
        blocked[-1] = True
        ids, keep, merges = MergeEngine(seq.astype(np.int64), blocked, 40, max_merges, 2).run()
        want_seq, want_merges = naive_merges(seq.tolist(), blocked.tolist(), 40, max_merges, 2)
        assert merges == want_merges
        assert ids[keep].tolist() == want_seq
