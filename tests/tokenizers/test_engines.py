"""Engines of one tokenizer.json: ids compared with hf (the reference) on real stdlib text."""
from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from pipeline.spec import TokenizerSpec
from pipeline.tokenizers.base import SLICE_COPY_MIN_TOKENS, TokenBatch, insert_each
from pipeline.tokenizers.engines import choose_engine, measure_engines
from pipeline.tokenizers.text import HFTokenizer
from pipeline.train.bpe import train_bpe

STDLIB = Path(sysconfig.get_paths()["stdlib"])
FAST_ENGINES = ("tiktoken", "gigatoken")


def stdlib_texts(max_bytes: int, skip: int = 0) -> list[str]:
    """Real Python sources (and their non-ASCII comments), in a fixed order."""
    texts, total = [], 0
    for path in sorted(STDLIB.rglob("*.py"))[skip:]:
        text = path.read_text("utf-8", errors="strict") if path.stat().st_size < 200_000 else ""
        if text:
            texts.append(text)
            total += len(text)
        if total >= max_bytes:
            break
    return texts


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory) -> Path:
    """A byte-level BPE (4k) trained here on ~1.5 MB of the stdlib."""
    out = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    train_bpe(iter(stdlib_texts(1_500_000)), 4000, str(out))
    return out


@pytest.fixture(scope="module")
def docs() -> list[str]:
    """Held-out stdlib files (not in the training sample) plus text with rare characters."""
    held_out = stdlib_texts(1_000_000, skip=900)
    return held_out + ["naïve café — 東京 \u2028 emoji 🚀 <|endoftext|> tabs\t\tend", "x"]


def per_doc(batch: TokenBatch) -> list[np.ndarray]:
    return [batch.values[batch.offsets[i]:batch.offsets[i + 1]] for i in range(len(batch))]


def needs(engine: str) -> None:
    if engine == "gigatoken":
        pytest.importorskip("gigatoken", reason="gigatoken is the optional extra `fast`")


@pytest.mark.parametrize("engine", FAST_ENGINES)
def test_fast_engine_ids_equal_hf(engine: str, tokenizer_json: Path, docs: list[str]) -> None:
    needs(engine)
    reference = per_doc(HFTokenizer(str(tokenizer_json), engine="hf").encode_batch(docs))
    assert len(reference) == len(docs) > 100 and sum(map(len, reference)) > 100_000
    tok = HFTokenizer(str(tokenizer_json), engine=engine)
    got = per_doc(tok.encode_batch(docs))
    bad = [i for i, (a, b) in enumerate(zip(got, reference)) if not np.array_equal(a, b)]
    assert bad == [], f"{engine} differs from hf on documents {bad[:5]}"
    # special-token text is text: every document decodes back exactly, the one that spells <|endoftext|> too
    assert sum("<|endoftext|>" in text for text in docs) >= 1
    assert all(tok.decode(ids) == text for ids, text in zip(got, docs))


@pytest.mark.parametrize("engine", ("hf", *FAST_ENGINES))
def test_every_document_ends_with_one_eos(engine: str, tokenizer_json: Path, docs: list[str]) -> None:
    needs(engine)
    tok = HFTokenizer(str(tokenizer_json), engine=engine)
    batch = tok.encode_batch(docs[:50])
    assert len(batch) == 50 and batch.values.dtype == np.uint32
    assert (batch.values[batch.offsets[1:] - 1] == tok.eos_id).all()
    assert int((batch.values == tok.eos_id).sum()) == 50


def test_flat_batches_agree_with_lists() -> None:
    seqs = [[5, 6, 7], [], [8], [9, 10]]
    want_values, want_offsets = [5, 6, 7, 1, 1, 8, 1, 9, 10, 1], [0, 4, 5, 7, 10]
    arrays = [np.array(s, dtype=np.uint32) for s in seqs]
    values, offsets = np.array([5, 6, 7, 8, 9, 10]), np.array([0, 3, 3, 4, 6])
    for batch in (TokenBatch.from_lists(seqs, 1), TokenBatch.from_arrays(arrays, 1),
                  TokenBatch.from_flat(values, offsets, 1)):
        assert batch.values.tolist() == want_values and batch.offsets.tolist() == want_offsets
    plain = TokenBatch.from_lists(seqs)
    assert plain.values.tolist() == [5, 6, 7, 8, 9, 10] and plain.offsets.tolist() == [0, 3, 3, 4, 6]


@pytest.mark.parametrize("mean_tokens", [3, 5000])  # np.insert below SLICE_COPY_MIN_TOKENS, slice copies above
@pytest.mark.parametrize("after", [True, False])
def test_insert_each_is_np_insert(mean_tokens: int, after: bool) -> None:
    rng = np.random.default_rng(mean_tokens)
    lengths = rng.integers(0, 2 * mean_tokens, 40)
    lengths[[0, 7, 8, -1]] = 0  # empty samples, two in a row, and at both ends
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = rng.integers(0, 2**32 - 1, int(offsets[-1]), dtype=np.uint32)
    want = np.insert(values, offsets[1:] if after else offsets[:-1], np.uint32(4_000_000_000))
    got = insert_each(values, offsets, 4_000_000_000, after=after)
    assert got.dtype == np.uint32 and np.array_equal(got, want)
    assert (offsets[-1] >= SLICE_COPY_MIN_TOKENS * 40) == (mean_tokens > 1000)  # each regime is the one meant


def test_auto_picks_the_fastest_exact_engine(tokenizer_json: Path, docs: list[str]) -> None:
    spec = TokenizerSpec(kind="hf", path=str(tokenizer_json))
    engine, report = choose_engine(spec, docs[:60])
    probe = report["probe"]
    exact = {name: r["mb_s"] for name, r in probe.items() if r.get("available") and r["exact"]}
    assert engine in exact and exact[engine] == max(exact.values())
    assert "identical to hf" in report["reason"]
    chosen = per_doc(HFTokenizer(str(tokenizer_json), engine=engine).encode_batch(docs))
    reference = per_doc(HFTokenizer(str(tokenizer_json), engine="hf").encode_batch(docs))
    assert all(np.array_equal(a, b) for a, b in zip(chosen, reference))


@pytest.fixture(scope="module")
def lstrip_json(tokenizer_json: Path, tmp_path_factory) -> Path:
    """The same BPE plus an added token that swallows the space before it (lstrip, as RoBERTa's <mask>).

    hf honours lstrip; a tiktoken encoding built from the file cannot, so tiktoken is inexact here.
    """
    data = json.loads(tokenizer_json.read_text())
    token_id = data["model"]["vocab"]["return"]
    data["added_tokens"].append({"id": token_id, "content": "return", "single_word": False, "lstrip": True,
                                 "rstrip": False, "normalized": False, "special": False})
    out = tmp_path_factory.mktemp("lstrip") / "tokenizer.json"
    out.write_text(json.dumps(data))
    return out


def test_inexact_engine_asked_for_is_used_and_its_mismatch_reported(lstrip_json: Path, docs: list[str]) -> None:
    probe = docs[:60]
    assert sum(" return" in d for d in probe) > 10
    spec = TokenizerSpec(kind="hf", path=str(lstrip_json), engine="tiktoken")
    engine, report = choose_engine(spec, probe)
    result = report["probe"]["tiktoken"]
    assert engine == "tiktoken" and result["exact"] is False
    assert 10 < result["mismatched_docs"] <= len(probe) == result["probe_docs"]
    assert f"differ from hf on {result['mismatched_docs']} of {len(probe)}" in report["reason"]


def test_auto_never_picks_an_inexact_engine(lstrip_json: Path, docs: list[str]) -> None:
    spec = TokenizerSpec(kind="hf", path=str(lstrip_json))
    engine, report = choose_engine(spec, docs[:60])
    assert report["probe"]["tiktoken"]["exact"] is False
    assert engine != "tiktoken" and report["probe"][engine]["exact"] is True


def test_unavailable_engine_is_reported_not_raised(tokenizer_json: Path, tmp_path: Path) -> None:
    data = json.loads(tokenizer_json.read_text())
    data["normalizer"] = {"type": "Lowercase"}  # tiktoken runs no normalizer but NFC: it must decline, not run inexactly
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(data))
    results = measure_engines(TokenizerSpec(kind="hf", path=str(path)), ["café", "x = 1"], ("tiktoken", "hf"))
    assert results["tiktoken"]["available"] is False
    assert "tiktoken cannot run" in results["tiktoken"]["why"] and "normalizer Lowercase" in results["tiktoken"]["why"]
    assert results["hf"]["exact"] is True


def test_gigatoken_batches_read_zero_copy_even_when_sliced(tokenizer_json: Path, docs: list[str]) -> None:
    needs("gigatoken")
    from pipeline.tokenizers.gigatoken_engine import flat_arrays, gigatoken_engine
    encode, flatten = gigatoken_engine(tokenizer_json)
    awkward_batch = encode(docs[:5])
    whole = flatten(awkward_batch, None)
    values, offsets = flat_arrays(awkward_batch[2:])  # a view whose offsets do not start at 0
    assert offsets[0] == 0 and len(offsets) == 4 and offsets[-1] > 0
    assert np.array_equal(values, whole.values[whole.offsets[2]:])
    assert np.shares_memory(flat_arrays(awkward_batch)[0], np.asarray(awkward_batch.layout.content.data))
