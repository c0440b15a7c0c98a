"""`tokenmill run` (real CLI, real Ray) with the reference encoders as TorchScript and torch.export programs,
and with an encoder that breaks its contract on some samples: those are quarantined, the rest commits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.tokenizers import encoder_reference as ref
from tests import media_fixtures as mf
from tests.tm_testing import run_cli
from tests.tokenizers.test_encoder import PICKY_CONTRACT, PICKY_FAILS, Picky, saved

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(script|save|load)` is deprecated:DeprecationWarning")


def run(root: Path, name: str, modality: str, inputs: str, tokenizer: dict) -> Path:
    job = root / f"{name}.yaml"
    job.write_text(json.dumps({"name": name, "source": {"uri": inputs, "modality": modality},
                               "tokenizer": tokenizer, "sink": {"uri": f"out-{name}", "formats": ["arrow"]},
                               "resources": {"workers": 1}, "on_error_max_fraction": 1.0, "report": False}))
    return job


def rows_and_errors(out: Path) -> tuple[dict[str, dict], dict[str, str]]:
    rows = {}
    for shard in json.loads((out / "dataset.json").read_text())["shards"]:
        for r in pa.ipc.open_file(str(out / shard["files"]["arrow"]["path"])).read_all().to_pylist():
            rows[Path(r["id"]).name] = r
    errors = {Path(e["member"] or e["uri"]).name: e["reason"]
              for f in (out / "_errors").glob("*.parquet") for e in pq.read_table(f).to_pylist()}
    return rows, errors


def tokenmill_run(job: Path, ray_address: str) -> None:
    done = run_cli("run", str(job), "--quiet", address=ray_address, cwd=job.parent)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_reference_encoders_through_tokenmill_run(tmp_path, ray_address, fmt):
    photos = mf.write_photos(tmp_path / "photos")
    audio = mf.write_audio(tmp_path / "audio")
    (tmp_path / "video").mkdir()
    mf.write_video(tmp_path / "video" / "pan.mp4", "libx264", mf.pan_frames(24, 96, 64), fps=8)
    models = {"image": ref.vqgan(**ref.SMALL_VQGAN), "audio": ref.audio_rvq(ch=4, n_q=4, codes=64),
              "video": ref.causal_video(ch=4, codes=256)}
    kind = "torchscript" if fmt == "torchscript" else "torch-export"
    for modality, model in models.items():
        path = saved(model, ref.contract(model, 64 if modality == "image" else 32), tmp_path / modality, fmt, 64
                     if modality == "image" else 32)
        inputs = {"image": "photos", "audio": "audio", "video": "video"}[modality]
        tokenmill_run(run(tmp_path, modality, modality, inputs,
                          {"kind": kind, "path": path.name, "batch_size": 4}), ray_address)
        rows, errors = rows_and_errors(tmp_path / f"out-{modality}")
        assert not errors, errors
        shapes = {n: r["shape"] for n, r in rows.items()}
        if modality == "image":
            assert len(rows) == len(photos) and set(map(tuple, shapes.values())) == {(4, 4)}
        elif modality == "audio":
            assert len(rows) == len(audio) and all(s[1] == 4 and s[0] % 75 == 0 for s in shapes.values())
            ids = np.concatenate([np.asarray(r["tokens"][:-1]).reshape(-1, 4) for r in rows.values()])
            assert all(((ids[:, q] >= 64 * q) & (ids[:, q] < 64 * (q + 1))).all() for q in range(4))
        else:
            assert shapes == {"pan.mp4": [6, 4, 4]}, shapes
        fp = json.loads((tmp_path / f"out-{modality}" / "dataset.json").read_text())["tokenizer"]
        assert fp["kind"] == kind and fp["options"]["precision"] == "fp32" and fp["options"]["device"] == "cpu"
        # an encoder has no decoder: inspect shows the sample's codes, not an image or a sound made of them
        name = sorted(rows)[0]
        looked = run_cli("inspect", f"out-{modality}", "--sample", name, "--out", f"look-{modality}", cwd=tmp_path)
        assert looked.returncode == 0, looked.stderr[-2000:]
        shown = json.loads((tmp_path / f"look-{modality}" / f"{name}.ids.json").read_text())
        assert (shown["shape"], shown["ids"]) == (rows[name]["shape"], rows[name]["tokens"][:-1])


def test_bad_encoder_outputs_are_quarantined_and_the_rest_commits(tmp_path, ray_address):
    from PIL import Image
    (tmp_path / "photos").mkdir()
    for name in mf.PHOTOS:
        Image.fromarray(mf.photo(name)).save(tmp_path / "photos" / f"{name}.png")
    for i in range(3):  # good ones
        Image.fromarray(np.ascontiguousarray(np.roll(mf.photo("astronaut"), 8 * i, axis=1))).save(
            tmp_path / "photos" / f"astronaut{i}.png")
    saved(Picky(), PICKY_CONTRACT, tmp_path / "picky", "torchscript")
    tokenmill_run(run(tmp_path, "bad", "image", "photos", {"kind": "torchscript", "path": "picky.jit",
                                                           "batch_size": 4}), ray_address)
    rows, errors = rows_and_errors(tmp_path / "out-bad")
    assert sorted(rows) == ["astronaut.png", "astronaut0.png", "astronaut1.png", "astronaut2.png"]
    assert sorted(errors) == sorted(f"{n}.png" for n in PICKY_FAILS)
    for name, reason in PICKY_FAILS.items():
        assert reason in errors[f"{name}.png"] and "tokenizer failed" in errors[f"{name}.png"], errors


def refused_without_a_write(job: Path, out: Path, ray_address: str, said: str) -> None:
    """`validate` and `run` both exit 2 with `said` in their one error line, and the run writes nothing."""
    checked = run_cli("validate", str(job), cwd=job.parent)
    done = run_cli("run", str(job), "--quiet", address=ray_address, cwd=job.parent)
    assert checked.returncode == done.returncode == 2, (checked.stderr[-2000:], done.stderr[-3000:])
    for stderr in (checked.stderr, done.stderr):
        assert f"tokenmill: error: {said}" in stderr, stderr[-2000:]
    assert not out.exists(), sorted(out.rglob("*"))  # not even the folder the run made for it


def test_a_model_that_breaks_its_contract_stops_the_run_before_it_writes(tmp_path, ray_address):
    """The driver does not load the model (the workers do, and check it): a grid that is not the one the
    contract declares is still refused with the field named, and so is `device: cuda` where torch sees no GPU
    (it would make cpu codes under a cuda fingerprint). The run writes nothing, so the same output takes the
    mended model (a provisional index of the refused tokenizer would have refused it)."""
    photos = mf.write_photos(tmp_path / "photos")
    model = ref.vqgan(**ref.SMALL_VQGAN)
    good = ref.contract(model, 64)
    path = saved(model, {**good, "input": {**good["input"], "size": 64, "multiple": 8}}, tmp_path / "enc",
                 "torchscript", 64)
    tokenizer = {"kind": "torchscript", "path": path.name, "batch_size": 4}
    out = tmp_path / "out-refused"
    job = run(tmp_path, "refused", "image", "photos", tokenizer)
    refused_without_a_write(job, out, ray_address, "tokenizer.path: enc.json input.multiple:")
    path.with_suffix(".json").write_text(json.dumps(good))
    if not torch.cuda.is_available():
        run(tmp_path, "refused", "image", "photos", {**tokenizer, "options": {"device": "cuda"}})
        refused_without_a_write(job, out, ray_address, "tokenizer.options.device: cuda, but torch sees no GPU here")
    run(tmp_path, "refused", "image", "photos", tokenizer)
    tokenmill_run(job, ray_address)
    rows, errors = rows_and_errors(out)
    assert len(rows) == len(photos) and not errors, errors
    run(tmp_path, "refused", "image", "photos", {**tokenizer, "precision": "bf16"})  # other codes: another dataset
    other = run_cli("run", str(job), "--quiet", address=ray_address, cwd=tmp_path)
    assert other.returncode == 2 and "(options: precision 'fp32' -> 'bf16'); write to a new sink.uri" in other.stderr, \
        other.stderr[-2000:]
