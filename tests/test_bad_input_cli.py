"""Issue 12's acceptance, as a new user: bad input never costs good data. The real CLI on real Ray
over real files cut, corrupted or mislabelled; every check here failed before the fix."""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import media_fixtures as mf
from tests.sources.test_compressed import zstd_bytes
from tests.tm_testing import STDLIB, run_cli


def errors(out: Path) -> dict[str, dict]:
    """Quarantined (member or uri basename) -> the row."""
    rows = [r for f in (out / "_errors").glob("*.parquet") for r in pq.read_table(f).to_pylist()]
    return {Path(r["member"] or r["uri"]).name: r for r in rows}


def totals(out: Path) -> dict:
    return json.loads((out / "dataset.json").read_text())["totals"]


def run(root: Path, name: str, body: str, ray_address: str, expect: int = 0):
    job = root / f"{name}.yaml"
    job.write_text(f"name: {name}\n{body}sink: {{uri: out-{name}}}\nresources: {{workers: 2}}\nreport: false\n")
    done = run_cli("run", str(job), "--quiet", address=ray_address)
    assert done.returncode == expect, done.stdout[-2000:] + done.stderr[-3000:]
    assert "0 failed, 0 retries" in done.stdout, done.stdout  # a bad record is never retried as storage I/O
    return root / f"out-{name}", done.stdout


def train(modality: str, corpus: Path, output: Path, vocab: int) -> dict:
    done = run_cli("train", "--modality", modality, "--input", str(corpus), "--output", str(output),
                   "--vocab-size", str(vocab))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """30 good photos, the acceptance's four damaged ones, and a codebook `tokenmill train` learned from them."""
    root = tmp_path_factory.mktemp("gallery")
    photos = mf.write_gallery(root / "photos", 30)
    mf.write_damaged_photos(root / "photos", photos[0], photos[2])
    result = train("image", root / "photos", root / "tok" / "image.safetensors", 64)
    assert result["samples"] == 30 and result["skipped"] == 4, result
    return root


def test_images_commit_all_good_photos(gallery, ray_address):
    out, _ = run(gallery, "img", "source: {uri: photos, modality: image}\n"
                                 "tokenizer: {kind: image-vq, path: tok/image.safetensors}\n", ray_address)
    assert totals(out)["n_samples"] == 30 and totals(out)["n_errors"] == 4
    bad = errors(out)
    assert bad["cut400.jpg"]["reason"] == "corrupt or truncated image: Truncated File Read"
    assert "corrupt or truncated image" in bad["cut.webp"]["reason"]
    assert bad["readme.jpg"]["reason"].startswith("not an image") and "bomb" in bad["huge.png"]["reason"]
    assert {r["stage"] for r in bad.values()} == {"decode"}


def test_webdataset_member_name_that_is_not_utf8(gallery, ray_address):
    mf.write_tars_with_non_utf8_name(gallery / "tars", sorted((gallery / "photos").glob("g*")))
    out, _ = run(gallery, "tars", "source: {uri: tars, format: webdataset, modality: image}\n"
                                  "tokenizer: {kind: image-vq, path: tok/image.safetensors}\n", ray_address)
    assert totals(out)["n_samples"] == 12 and totals(out)["n_errors"] == 1
    [(name, row)] = errors(out).items()
    assert name.startswith("caf\\xe9.") and "is not valid UTF-8" in row["reason"]


def test_audio_commits_all_good_speech(tmp_path, ray_address):
    speech = mf.write_audio(tmp_path / "speech")
    mf.write_cut_flac(tmp_path / "speech" / "cut.flac", speech[1])
    mf.write_nan_wav(tmp_path / "speech" / "nan.wav")
    result = train("audio", tmp_path / "speech", tmp_path / "tok" / "audio.safetensors", 32)
    assert result["samples"] == 4 and result["skipped"] == 2, result
    out, _ = run(tmp_path, "aud", "source: {uri: speech, modality: audio}\n"
                                  "tokenizer: {kind: audio-mulaw, sample_rate: 8000}\n", ray_address)
    assert totals(out)["n_samples"] == 4 and totals(out)["n_errors"] == 2
    bad = errors(out)
    assert bad["nan.wav"]["reason"] == "audio holds 501 NaN or infinite samples"
    assert bad["cut.flac"]["reason"].startswith("corrupt or truncated FLAC audio")


def text_corpus(folder: Path) -> int:
    """JSON lines of real stdlib modules in plain, .zst and .gz shards; returns the documents written."""
    folder.mkdir(parents=True)
    files = sorted((STDLIB / "json").glob("*.py")) + sorted((STDLIB / "email").glob("*.py"))
    docs = [json.dumps({"text": p.read_text(), "path": p.name}).encode() + b"\n" for p in files]
    third = len(docs) // 3
    (folder / "shard-0.jsonl").write_bytes(b"".join(docs[:third]))
    (folder / "shard-1.jsonl.zst").write_bytes(zstd_bytes(b"".join(docs[third:2 * third])))
    (folder / "shard-2.jsonl.gz").write_bytes(gzip.compress(b"".join(docs[2 * third:])))
    return len(docs)


def test_text_corpus_with_a_fifo_links_odd_names_and_compressed_shards(tmp_path, bpe_tokenizer, ray_address):
    n_docs = text_corpus(tmp_path / "corpus")
    os.mkfifo(tmp_path / "corpus" / "pipe.jsonl")  # hung the run forever before
    (tmp_path / "corpus" / "passwd.jsonl").symlink_to(STDLIB / "this.py")  # a file outside the corpus
    (tmp_path / "corpus" / "dangling.jsonl").symlink_to(tmp_path / "corpus" / "gone.jsonl")
    (tmp_path / "corpus" / ".partial.jsonl").write_bytes(b'{"text": "half a doc')
    with open(os.fsencode(tmp_path / "corpus") + b"/caf\xe9.jsonl", "wb") as f:
        f.write(b'{"text": "named in Latin-1"}\n')
    out, stdout = run(tmp_path, "text", "source: {uri: corpus, format: jsonl, unit_bytes: 64KiB}\n"
                                        f"tokenizer: {{kind: hf, path: {bpe_tokenizer}}}\n", ray_address)
    assert totals(out)["n_samples"] == n_docs and totals(out)["n_errors"] == 5
    bad = errors(out)
    assert bad["pipe.jsonl"]["reason"] == "not a regular file (a FIFO)"
    assert "not followed" in bad["passwd.jsonl"]["reason"] and "dangling" in bad["dangling.jsonl"]["reason"]
    assert bad[".partial.jsonl"]["reason"].startswith("hidden") and "UTF-8" in bad["caf\\xe9.jsonl"]["reason"]
    assert {r["stage"] for r in bad.values()} == {"list"}
    assert "listing: 5 entries not read" in stdout


def test_a_long_line_is_quarantined_and_the_engine_probe_stays_bounded(tmp_path, bpe_tokenizer, ray_address):
    (tmp_path / "c").mkdir()
    lines = [line for line in (STDLIB / "csv.py").read_text().splitlines() if line.strip()]
    blob = (STDLIB / "email" / "message.py").read_text().replace("\n", " ")
    long = (blob * (21 * 2**20 // len(blob) + 1))[:20 * 2**20]  # 20 MiB on one line
    (tmp_path / "c" / "web.txt").write_text("\n".join(lines[:50] + [long] + lines[50:]) + "\n")
    out, _ = run(tmp_path, "long", "source: {uri: c, format: lines, limits: {max_bytes: 5MiB}}\n"
                                   f"tokenizer: {{kind: hf, path: {bpe_tokenizer}}}\n", ray_address)
    assert totals(out)["n_samples"] == len(lines) and totals(out)["n_errors"] == 1
    [row] = errors(out).values()
    assert row["reason"] == f"line is {len(long.encode())} bytes, over limits.max_bytes=5242880"


def test_a_unit_that_commits_nothing_useful_exits_3(tmp_path, ray_address):
    (tmp_path / "c").mkdir()
    shutil.copyfile(STDLIB / "csv.py", tmp_path / "c" / "csv.py")
    for elf in mf.elf_binaries(3):  # executables named like source files: not UTF-8
        shutil.copyfile(elf, tmp_path / "c" / f"{elf.name}.py")
    out, stdout = run(tmp_path, "junk", "source: {uri: c, modality: code}\ntokenizer: {kind: bytes}\n", ray_address,
                      expect=3)
    head = stdout.splitlines()[:3]
    assert "WARNING: 1 unit(s) committed nothing useful (exit 3)" in head[1]
    assert "3 of 4 records quarantined, over on_error_max_fraction=0.5" in head[2]
    assert totals(out)["n_samples"] == 1, "the shards still commit"


def test_a_truncated_parquet_file_is_quarantined_and_the_run_goes_on(tmp_path, ray_address):
    (tmp_path / "p").mkdir()
    for name, module in (("a", "csv.py"), ("b", "this.py"), ("c", "json/decoder.py")):
        rows = [line for line in (STDLIB / module).read_text().splitlines() if line]
        pq.write_table(pa.table({"text": rows}), tmp_path / "p" / f"{name}.parquet")
    cut = (tmp_path / "p" / "c.parquet").read_bytes()
    (tmp_path / "p" / "c.parquet").write_bytes(cut[: len(cut) // 2])
    out, stdout = run(tmp_path, "pq", "source: {uri: p, format: parquet}\ntokenizer: {kind: bytes}\n", ray_address,
                      expect=3)  # c's unit yields no sample: the run says so
    expected = sum(len(pq.read_table(tmp_path / "p" / f"{n}.parquet")) for n in "ab")
    assert totals(out)["n_samples"] == expected and totals(out)["n_errors"] == 1
    assert errors(out)["c.parquet"]["reason"].startswith("not a readable parquet file: ArrowInvalid")
    assert "no sample (1 record(s) quarantined)" in stdout


def test_a_sink_inside_the_source_is_refused_by_validate_and_run(tmp_path):
    (tmp_path / "c").mkdir()
    shutil.copyfile(STDLIB / "csv.py", tmp_path / "c" / "csv.py")
    job = tmp_path / "job.yaml"
    job.write_text("name: nest\nsource: {uri: c}\ntokenizer: {kind: bytes}\nsink: {uri: c/tokens}\n")
    for command in ("validate", "run"):
        done = run_cli(command, str(job))
        assert done.returncode == 2 and "sink.uri:" in done.stderr and "lies inside source.uri" in done.stderr
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["csv.py"]
    job.write_bytes(b"name: \xff\xfe binary\n")
    done = run_cli("validate", str(job))
    assert done.returncode == 2 and done.stderr.strip().endswith("a job spec is a YAML file")
