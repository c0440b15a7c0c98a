"""`tokenmill validate` builds the tokenizer and checks the stages against it: what it accepts, run accepts."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.spec import SpecError, load_spec
from pipeline.validate import check_job


def write_job(tmp_path: Path, tokenizer: str, stages: str = "", modality: str = "code") -> Path:
    (tmp_path / "corpus").mkdir(exist_ok=True)
    job = tmp_path / "job.yaml"
    job.write_text(f"name: v\nsource: {{uri: corpus, modality: {modality}}}\ntokenizer: {tokenizer}\n"
                   f"{stages}sink: {{uri: out}}\n")
    return job


def validate(job: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(["validate", str(job)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_trained_tokenizer_validates(tmp_path, bpe_tokenizer, capsys):
    code, out, _ = validate(write_job(tmp_path, f"{{kind: hf, path: {bpe_tokenizer}}}"), capsys)
    assert code == 0 and "valid job spec" in out and "tokenizer hf with 2,000 ids" in out


@pytest.mark.parametrize("case", ["missing", "corrupt", "tiktoken.gz"])
def test_a_tokenizer_that_does_not_load_is_one_line_and_exit_2(tmp_path, bpe_tokenizer, capsys, case):
    if case == "missing":
        tokenizer, expect = f"{{kind: hf, path: {tmp_path / 'nope.json'}}}", "tokenizer.path: file not found"
    elif case == "corrupt":
        (tmp_path / "tok.json").write_text('{"version": "1.0", "model": ')
        tokenizer, expect = f"{{kind: hf, path: {tmp_path / 'tok.json'}}}", "not a readable tokenizer.json"
    else:  # a gzipped rank file loads, but one tiktoken does not define needs its pattern and special tokens
        from pipeline.spec import TokenizerSpec
        from pipeline.tokenizers import build_tokenizer
        from pipeline.tokenizers.text import write_tiktoken_file
        plain = tmp_path / "tok.tiktoken"
        write_tiktoken_file(build_tokenizer(TokenizerSpec(kind="hf", path=str(bpe_tokenizer))), str(plain))
        (tmp_path / "tok.tiktoken.gz").write_bytes(gzip.compress(plain.read_bytes()))
        tokenizer, expect = f"{{kind: tiktoken, path: {tmp_path / 'tok.tiktoken.gz'}}}", "is not an encoding tiktoken defines"
    code, out, err = validate(write_job(tmp_path, tokenizer), capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("tokenmill: error: ") and expect in err, err


def test_the_int32_id_limit_is_checked_with_the_built_tokenizer(tmp_path, bpe_tokenizer, capsys):
    job = write_job(tmp_path, f"{{kind: hf, path: {bpe_tokenizer}}}",
                    stages="stages: [{kind: dynamic, max_merges: 2147483000}]\n")
    load_spec(job)  # the spec alone is fine: the vocabulary size comes with the tokenizer
    with pytest.raises(SpecError, match=r"stages\[0\] \(dynamic\): base vocabulary 2000 \+ max_merges"):
        check_job(load_spec(job))
    code, _, err = validate(job, capsys)
    assert code == 2 and "lower max_merges" in err and len(err.strip().splitlines()) == 1


def test_kind_traits_match_the_built_tokenizers(tmp_path, bpe_tokenizer):
    """What parse time assumes of a kind (codebook, token bytes) is what its tokenizer gives."""
    jobs = {"hf": (f"{{kind: hf, path: {bpe_tokenizer}}}", "code"), "bytes": ("{kind: bytes}", "binary"),
            "audio-mulaw": ("{kind: audio-mulaw}", "audio")}
    for kind, (tokenizer, modality) in jobs.items():
        spec = load_spec(write_job(tmp_path, tokenizer, modality=modality))
        built = check_job(spec)
        assert (built.codebook() is not None, built.token_bytes() is not None) == \
            (spec.tokenizer.has_codebook, spec.tokenizer.has_token_bytes), kind
