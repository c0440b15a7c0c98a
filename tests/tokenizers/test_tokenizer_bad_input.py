"""Bad rank files, special tokens and engine choices: each is one line from `tokenmill validate`, exit 2."""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.spec import TokenizerSpec
from pipeline.tokenizers.engines import choose_engine
from pipeline.tokenizers.tiktoken_file import CL100K_PATTERN
from tests.tokenizers.production import rank_file

SMALL_SPECIALS = "{'<|endoftext|>': 1000}"


def small_ranks(tmp_path: Path, edit=None) -> Path:
    """The first 1,000 lines of the real cl100k_base file (an unknown encoding), optionally edited."""
    lines = gzip.decompress(rank_file("cl100k_base").read_bytes()).splitlines()[:1000]
    if edit:
        lines = edit(lines)
    path = tmp_path / "small.tiktoken"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def validate(tmp_path: Path, tokenizer: str, capsys) -> str:
    (tmp_path / "corpus").mkdir(exist_ok=True)
    job = tmp_path / "job.yaml"
    job.write_text(f"name: v\nsource: {{uri: corpus, modality: text}}\ntokenizer: {tokenizer}\nsink: {{uri: out}}\n")
    code = main(["validate", str(job)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and err.startswith("tokenmill: error: "), err
    return err


def small_job(path: Path, options: str = f"{{special_tokens: {SMALL_SPECIALS}}}") -> str:
    return f"{{kind: tiktoken, path: {path}, pattern: {json.dumps(CL100K_PATTERN)}, options: {options}}}"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda ls: ls + [ls[500].split()[0] + b" 500"], r"line 1001: rank 500 repeats line 501"),
    (lambda ls: ls + [b"IQ== 1000"], r"line 1001: token b'!' repeats line 1"),
    (lambda ls: ls[:300] + ls[301:], r"rank 300 is missing \(1 missing below the top rank 999\)"),
    (lambda ls: ls[:10] + [b"@@not-base64@@ 10"] + ls[11:], r"line 11: b'@@not-base64@@' is not base64"),
    (lambda ls: ls[:10] + [b"IQ=="] + ls[11:], r"line 11: expected '<base64 token> <rank>'"),
    (lambda ls: [], r"holds no ranks"),
])
def test_a_bad_rank_file_is_one_line(tmp_path, capsys, edit, message) -> None:
    err = validate(tmp_path, small_job(small_ranks(tmp_path, edit)), capsys)
    assert "tokenizer.path: " in err and re.search(message, err), err


@pytest.mark.parametrize(("options", "message"), [
    ("{special_tokens: {'<|endoftext|>': 5}}", r"tokenizer\.options\.special_tokens: '<\|endoftext\|>' has id 5, "
                                               r"the rank of token b'&' in"),
    ("{special_tokens: {'<|endoftext|>': 1000, '<|eot|>': 1000}}", r"'<\|eot\|>' and '<\|endoftext\|>' share id 1000"),
    ("{special_tokens: {'<|eot|>': 1000}}", r"tokenizer\.add_eos: no EOS token \(<\|endoftext\|>\) in the special "
                                            r"tokens of small\.tiktoken \(<\|eot\|>\); set tokenizer\.options\.eos_token"),
    ("{special_tokens: {'<|endoftext|>': 1000}, eos_token: '<|im_end|>'}",
     r"tokenizer\.options\.eos_token: '<\|im_end\|>' is not in the special tokens of small\.tiktoken"),
    ("{special_tokens: {'<|endoftext|>': 1000}, eos_id: 7}",
     r"tokenizer\.options\.eos_id: 7 is not an id of the special tokens"),
])
def test_special_tokens_that_do_not_fit_are_one_line(tmp_path, capsys, options, message) -> None:
    err = validate(tmp_path, small_job(small_ranks(tmp_path), options), capsys)
    assert re.search(message, err), err


@pytest.mark.parametrize(("tokenizer", "message"), [
    ("{kind: tiktoken, path: SMALL}", r"tokenizer\.pattern: small\.tiktoken is not an encoding tiktoken defines"),
    ("{kind: tiktoken, path: SMALL, pattern: '\\\\s+'}", r"tokenizer\.options\.special_tokens: small\.tiktoken"),
    ("{kind: tiktoken, path: SMALL, pattern: '(?<=x', options: {special_tokens: {'<|endoftext|>': 1000}}}",
     r"tokenizer\.pattern: tiktoken cannot compile it"),
    ("{kind: tiktoken, path: SMALL, pattern: '\\\\s+', engine: gigatoken, options: {special_tokens: "
     "{'<|endoftext|>': 1000}}}", r"tokenizer\.engine: gigatoken has no pre-tokenizer for this split regex"),
    (f"{{kind: tiktoken, path: O200K, pattern: {json.dumps(CL100K_PATTERN)}}}",
     r"tokenizer\.pattern: .* holds o200k_base's ranks, whose official regex is not this one"),
    ("{kind: tiktoken, path: O200K, options: {special_tokens: {'<|endoftext|>': 200001}}}",
     r"'<\|endoftext\|>' is o200k_base's special token 199999, not 200001"),
    ("{kind: tiktoken, path: O200K, options: {eos_token: '<|im_end|>'}}",
     r"tokenizer\.options\.eos_token: '<\|im_end\|>' is not in the special tokens of o200k_base\.tiktoken\.gz"),
    ("{kind: tiktoken, path: DAMAGED}", r"tokenizer\.path: .*damaged\.tiktoken\.gz is a damaged gzip file"),
])
def test_a_spec_the_file_cannot_honour_is_one_line(tmp_path, capsys, tokenizer, message) -> None:
    (tmp_path / "damaged.tiktoken.gz").write_bytes(rank_file("o200k_base").read_bytes()[:5000])
    tokenizer = tokenizer.replace("SMALL", str(small_ranks(tmp_path))).replace("O200K", str(rank_file("o200k_base")))
    err = validate(tmp_path, tokenizer.replace("DAMAGED", str(tmp_path / "damaged.tiktoken.gz")), capsys)
    assert re.search(message, err), err


@pytest.fixture
def whitespace_json(bpe_tokenizer: Path, tmp_path: Path) -> Path:
    """A tokenizer.json whose pre-tokenizer (Whitespace) tiktoken cannot run."""
    data = json.loads(bpe_tokenizer.read_text())
    data["pre_tokenizer"] = {"type": "Whitespace"}
    path = tmp_path / "whitespace.json"
    path.write_text(json.dumps(data))
    return path


def test_engine_tiktoken_is_refused_with_the_reason_and_auto_falls_back(whitespace_json: Path, capsys, tmp_path) -> None:
    err = validate(tmp_path, f"{{kind: hf, path: {whitespace_json}, engine: tiktoken}}", capsys)
    assert "tokenizer.engine: tiktoken cannot run" in err and "its pre-tokenizer is Whitespace" in err
    engine, report = choose_engine(TokenizerSpec(kind="hf", path=str(whitespace_json)), ["x = 1\n", "def f(): pass\n"])
    assert engine in ("hf", "gigatoken") and report["probe"]["tiktoken"]["available"] is False
    assert "its pre-tokenizer is Whitespace" in report["probe"]["tiktoken"]["why"]


def test_an_eos_token_the_hf_vocabulary_lacks_is_one_line(bpe_tokenizer: Path, capsys, tmp_path) -> None:
    err = validate(tmp_path, f"{{kind: hf, path: {bpe_tokenizer}, options: {{eos_token: '<|im_end|>'}}}}", capsys)
    assert "tokenizer.options.eos_token: '<|im_end|>' is not in the vocabulary of" in err
