"""`tokenmill run` with the real o200k_base and cl100k_base files, through the CLI on real Ray, as a new user
would: every document's ids are tiktoken's encode_ordinary followed by the official <|endoftext|>."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from tests.tm_testing import run_cli
from tests.tokenizers.production import rank_file, real_texts, reference_encoding, specials_in_text

JOB = """name: {name}
source: {{uri: {corpus}, format: files, modality: text, unit_bytes: 600KiB}}
tokenizer: {{kind: tiktoken, path: {tok}}}
sink: {{uri: {out}, formats: [arrow]}}
resources: {{workers: 2}}
report: false
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """~2.5 MB of real code and prose as one file per document, plus documents that spell special tokens."""
    root = tmp_path_factory.mktemp("tiktoken-cli") / "corpus"
    root.mkdir()
    for i, text in enumerate(real_texts(2_500_000, skip=100) + specials_in_text()):
        (root / f"doc{i:04d}.txt").write_bytes(text.encode("utf-8"))
    return root


def read_rows(out: Path) -> tuple[dict, dict[str, list[int]]]:
    index = json.loads((out / "dataset.json").read_text())
    tables = [pa.ipc.open_file(out / s["files"]["arrow"]["path"]).read_all() for s in index["shards"]]
    table = pa.concat_tables(tables)
    return index, dict(zip(table.column("id").to_pylist(), table.column("tokens").to_pylist()))


@pytest.mark.parametrize("name", ("o200k_base", "cl100k_base"))
def test_run_gives_tiktokens_ids_for_every_document(name: str, corpus: Path, ray_address: str) -> None:
    root = corpus.parent
    job = root / f"{name}.yaml"
    job.write_text(JOB.format(name=name, corpus=corpus, tok=rank_file(name), out=root / name))
    checked = run_cli("validate", str(job))
    enc = reference_encoding(name)
    assert checked.returncode == 0 and f"tokenizer tiktoken with {enc.n_vocab:,} ids" in checked.stdout, checked
    done = run_cli("run", str(job), address=ray_address)
    assert done.returncode == 0, done.stderr[-3000:]

    index, rows = read_rows(root / name)
    sources = sorted(corpus.iterdir())
    assert len(rows) == len(sources) == index["totals"]["n_samples"] > 100
    matched = 0
    for sample_id, tokens in rows.items():
        text = (corpus / Path(sample_id).name).read_bytes().decode("utf-8")  # ids absolute or relative
        assert tokens == enc.encode_ordinary(text) + [enc.eot_token], sample_id
        matched += 1
    assert matched == len(sources)
    tok = index["tokenizer"]
    assert (tok["vocab_size"], tok["eos_id"], tok["encoding"]) == (enc.n_vocab, enc.eot_token, name)
    assert tok["special_tokens"] == enc._special_tokens and tok["engine"] in ("tiktoken", "gigatoken")
    assert index["token_dtype"] == "uint32"


def test_inspect_writes_special_token_text_back(corpus: Path, ray_address: str, tmp_path: Path) -> None:
    """The decoded file of a document that spells <|endoftext|> is that document (run by the test above,
    or here when run alone)."""
    out = corpus.parent / "o200k_base"
    if not (out / "dataset.json").exists():
        job = corpus.parent / "inspect.yaml"
        job.write_text(JOB.format(name="inspect", corpus=corpus, tok=rank_file("o200k_base"), out=out))
        assert run_cli("run", str(job), address=ray_address).returncode == 0
    _, rows = read_rows(out)
    spelled = [sid for sid in rows if "<|endoftext|>" in (corpus / Path(sid).name).read_text()]
    assert len(spelled) >= 3
    for sample_id in spelled:
        shown = run_cli("inspect", str(out), "--sample", sample_id, "--out", str(tmp_path))
        assert shown.returncode == 0, shown.stderr
        name = Path(sample_id).name
        assert (tmp_path / name).read_bytes() == (corpus / name).read_bytes()
