"""Output formats added or removed between runs: committed units get them from their own shards, not
tokenized again, byte for byte what a fresh run writes; through the real CLI on real Ray."""
from __future__ import annotations

import json
from pathlib import Path


from tests.tm_testing import copy_stdlib, run_cli

JOB = """name: formats
source: {{uri: {corpus}, format: files, modality: code, unit_bytes: 40KiB}}
tokenizer: {{kind: hf, path: {tok}}}
stages: [{{kind: dynamic, max_merges: 64}}]
sink: {{uri: {out}, formats: {formats}, keep_source: {keep}}}
resources: {{workers: 2}}
report: false
"""


def _job(root: Path, tok: Path, out: str, formats: list[str], keep: bool = False) -> Path:
    path = root / f"{out}-{'-'.join(formats)}-{keep}.yaml"
    path.write_text(JOB.format(corpus=root / "corpus", tok=tok, out=root / out, formats=json.dumps(formats),
                               keep=str(keep).lower()))
    return path


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir()) if p.is_file()}


def _ran(result) -> int:
    line = next(x for x in result.stdout.splitlines() if "units:" in x)
    return int(line.split("planned, ")[1].split(" run")[0])


def test_added_formats_come_from_the_shards_and_match_a_fresh_run(tmp_path, bpe_tokenizer, ray_address):
    copy_stdlib(tmp_path / "corpus", ("json", "email"))
    first = run_cli("run", str(_job(tmp_path, bpe_tokenizer, "out", ["arrow"])), address=ray_address)
    assert first.returncode == 0, first.stderr[-2000:]
    n_units = len(json.loads((tmp_path / "out" / "dataset.json").read_text())["shards"])

    every = ["arrow", "parquet", "webdataset"]
    grown = run_cli("run", str(_job(tmp_path, bpe_tokenizer, "out", every)), address=ray_address)
    assert grown.returncode == 0, grown.stderr[-2000:]
    assert _ran(grown) == 0 and f"{n_units} given the spec's formats from their shards" in grown.stdout, grown.stdout
    status = run_cli("status", str(tmp_path / "out"))
    assert f"nothing tokenized, {n_units} units given the spec's formats" in status.stdout, status.stdout
    fresh = run_cli("run", str(_job(tmp_path, bpe_tokenizer, "fresh", every)), address=ray_address)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert _files(tmp_path / "out") == _files(tmp_path / "fresh")  # tars, their .tar.idx, parquet: the same bytes
    a, b = (json.loads((tmp_path / o / "dataset.json").read_text()) for o in ("out", "fresh"))
    assert a["shards"] == b["shards"] and a["totals"] == b["totals"]
    tar = next((tmp_path / "out" / "shards").glob("*.tar"))
    assert "__vocab__" in _tar_names(tar)  # the dynamic vocabulary travels along

    # a format dropped: nothing runs, its files go, the index lists the rest
    fewer = run_cli("run", str(_job(tmp_path, bpe_tokenizer, "out", ["parquet"])), address=ray_address)
    assert fewer.returncode == 0 and _ran(fewer) == 0, fewer.stdout
    assert {p.suffix for p in (tmp_path / "out" / "shards").iterdir() if p.is_file()} == {".parquet"}
    index = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert all(list(s["files"]) == ["parquet"] for s in index["shards"])


def test_a_tar_with_sources_is_not_made_from_arrow_the_units_run(tmp_path, bpe_tokenizer, ray_address):
    copy_stdlib(tmp_path / "corpus", ("json",))
    assert run_cli("run", str(_job(tmp_path, bpe_tokenizer, "out", ["arrow"], keep=True)),
                   address=ray_address).returncode == 0
    again = run_cli("run", str(_job(tmp_path, bpe_tokenizer, "out", ["arrow", "webdataset"], keep=True)),
                    address=ray_address)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _ran(again) >= 1  # the original bytes are only in the inputs: tokenized again
    tar = next((tmp_path / "out" / "shards").glob("*.tar"))
    assert any(n.endswith(".py") for n in _tar_names(tar))


def _tar_names(path: Path) -> list[str]:
    import tarfile
    with tarfile.open(path) as tar:
        return tar.getnames()
