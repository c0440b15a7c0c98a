"""Acceptance for images, audio, video and binaries, as a new user: `tokenmill train`, then `tokenmill run`
on real Ray over real files plus the bad files of issue 4, then shapes, quarantine reasons and inspect."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.tm_testing import run_cli
from tests import media_fixtures as mf


def shard_rows(out: Path) -> list[dict]:
    rows = []
    for shard in json.loads((out / "dataset.json").read_text())["shards"]:
        rows += pa.ipc.open_file(str(out / shard["files"]["arrow"]["path"])).read_all().to_pylist()
    assert rows, "no samples"
    return rows


def errors(out: Path) -> dict[str, str]:
    """Quarantined (uri or member basename) -> reason."""
    found = {}
    for f in (out / "_errors").glob("*.parquet"):
        for e in pq.read_table(f).to_pylist():
            found[Path(e["member"] or e["uri"]).name] = e["reason"]
    return found


def run_job(root: Path, name: str, source: str, tokenizer: str, ray_address: str) -> Path:
    job = root / f"{name}.yaml"
    job.write_text(f"name: {name}\nsource: {source}\ntokenizer: {tokenizer}\n"
                   f"sink: {{uri: out-{name}, formats: [arrow, webdataset]}}\nresources: {{workers: 2}}\nreport: false\n")
    done = run_cli("run", str(job), "--quiet", address=ray_address)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / f"out-{name}"


def train(modality: str, corpus: Path, output: Path, vocab: int) -> dict:
    done = run_cli("train", "--modality", modality, "--input", str(corpus), "--output", str(output),
                   "--vocab-size", str(vocab))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_images(tmp_path, ray_address):
    photos = mf.write_photos(tmp_path / "photos")
    train("image", tmp_path / "photos", tmp_path / "tok" / "image.safetensors", 128)
    mf.write_bad_images(tmp_path / "photos", photos[0])
    mf.write_image_shard(tmp_path / "tars" / "shard-0.tar", photos[:4], evil=True)
    out = run_job(tmp_path, "img", "{uri: photos, modality: image}", "{kind: image-vq, path: tok/image.safetensors}",
                  ray_address)
    rows = {Path(r["id"]).name: r for r in shard_rows(out)}
    assert rows["astronaut.jpg"]["shape"] == [16, 16] and rows["coffee.png"]["shape"] == [11, 16]
    assert rows["rotated.jpg"]["shape"] == [16, 11] and len(rows["rocket.gif"]["tokens"]) == 11 * 16 + 1
    bad = errors(out)
    assert "truncated" in bad["cut.jpg"] and "decompression bomb" in bad["bomb.png"] and "not an image" in bad["notes.jpg"]
    assert (out / "tokenizer" / "image.safetensors").exists() and (out / "tokenizer" / "image.json").exists()

    tars = run_job(tmp_path, "imgtar", "{uri: tars, format: webdataset, modality: image}",
                   "{kind: image-vq, path: tok/image.safetensors}", ray_address)
    rows = shard_rows(tars)
    assert [r["id"].rsplit("/", 1)[1] for r in rows] == ["sample000", "sample001", "sample002", "sample003"]
    assert json.loads(rows[0]["meta"])["caption"] == "astronaut" and rows[1]["shape"] == [11, 16]
    bad = errors(tars)
    assert "'..'" in bad["x.jpg"] and "absolute" in bad["abs.jpg"]
    assert not (tmp_path.parent / "x.jpg").exists() and not Path("/tmp/abs.jpg").exists()

    from pipeline.decode_sample import inspect_sample
    png = inspect_sample(str(out), "astronaut.jpg", str(tmp_path / "look"))[0]
    from PIL import Image
    seen = np.asarray(Image.open(png).convert("L"), float)
    truth = np.asarray(Image.open(photos[0]).convert("L").resize(seen.shape[::-1]), float)
    assert np.corrcoef(seen.ravel(), truth.ravel())[0, 1] > 0.8


def test_codebook_that_is_not_safetensors_stops_the_run(tmp_path, ray_address):
    mf.write_photos(tmp_path / "photos")
    mf.not_safetensors(tmp_path / "cb.safetensors")
    job = tmp_path / "job.yaml"
    job.write_text("name: bad\nsource: {uri: photos, modality: image}\ntokenizer: {kind: image-vq, path: cb.safetensors}\n"
                   "sink: {uri: out}\n")
    done = run_cli("run", str(job), address=ray_address)
    assert done.returncode == 2 and "not a safetensors file" in done.stderr
    assert not (tmp_path / "out" / "shards").exists()


def test_audio(tmp_path, ray_address):
    speech = mf.write_audio(tmp_path / "speech")
    train("audio", tmp_path / "speech", tmp_path / "tok" / "audio.safetensors", 64)
    mf.write_bad_audio(tmp_path / "speech", speech[0])
    out = run_job(tmp_path, "aud", "{uri: speech, modality: audio}", "{kind: audio-vq, path: tok/audio.safetensors}",
                  ray_address)
    rows = shard_rows(out)
    assert len(rows) == 4
    for r in rows:
        seconds = json.loads(r["meta"])["seconds"]
        assert r["shape"] == [len(r["tokens"]) - 1] and abs(r["shape"][0] - 50 * seconds) <= 2
    bad = errors(out)
    assert "cut short" in bad["cut.wav"] and "not decodable audio" in bad["notes.flac"]


def test_video(tmp_path, ray_address):
    mf.write_photos(tmp_path / "photos")
    train("image", tmp_path / "photos", tmp_path / "tok" / "image.safetensors", 64)
    mf.write_videos(tmp_path / "videos")
    mf.write_bad_videos(tmp_path / "videos")
    out = run_job(tmp_path, "vid", "{uri: videos, modality: video}",
                  "{kind: video, path: tok/image.safetensors, fps: 5}", ray_address)
    rows = {Path(r["id"]).name: r for r in shard_rows(out)}
    assert set(rows) == {"pan.mp4", "pan.webm", "pan.mkv"}
    assert all(r["shape"] == [10, 12, 16] and len(r["tokens"]) == 10 * 12 * 16 + 1 for r in rows.values())
    bad = errors(out)
    assert "zero bytes" in bad["empty.mp4"] and "no video stream" in bad["voice.mp4"]
    assert "not decodable video" in bad["notes.webm"]


def test_binaries(tmp_path, ray_address):
    elves = mf.elf_binaries(10)
    (tmp_path / "bin").mkdir()
    for p in elves:
        shutil.copyfile(p, tmp_path / "bin" / p.name)
    (tmp_path / "bin" / "empty").write_bytes(b"")
    train("binary", tmp_path / "bin", tmp_path / "tok" / "binary.json", 1024)
    out = run_job(tmp_path, "bin", "{uri: bin, modality: binary}", "{kind: binary-bpe, path: tok/binary.json}",
                  ray_address)
    from pipeline.tokenizers import build_tokenizer
    from pipeline.spec import TokenizerSpec
    tok = build_tokenizer(TokenizerSpec(kind="binary-bpe", path=str(out / "tokenizer" / "binary.json")))
    rows = shard_rows(out)
    assert len(rows) == len(elves)
    for r in rows:
        assert tok.decode(np.array(r["tokens"])) == (tmp_path / "bin" / r["id"]).read_bytes()  # names below the root
    assert "empty" in errors(out)["empty"]
