"""Neural encoder plug-ins (pipeline.tokenizers.encoder): contracts refused by field, batching by shape,
the same codes whatever the batch size, bad outputs named, pickles and untrusted factories refused."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.decoders.audio import AudioClip, resample
from pipeline.decoders.video import VideoClip
from pipeline.spec import SpecError, TokenizerSpec
from pipeline.tokenizers import build_tokenizer
from pipeline.tokenizers import encoder_reference as ref
from tests import media_fixtures as mf

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(script|save|load)` is deprecated:DeprecationWarning")


class Picky(torch.nn.Module):
    """Codes from 16x16 means; breaks the contract in a different way for samples of given brightness."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        rb = (x[:, 0] - x[:, 2]).mean(dim=(1, 2))
        codes = ((torch.nn.functional.avg_pool2d(x, 16).mean(1) + 1) * 8).clamp(0, 15).long()
        if bool((m > 0).any()):
            raise RuntimeError("grey images are refused")
        if bool(((m > -0.35) & (m < -0.2)).any()):
            return codes.float()
        if bool(((m > -0.5) & (m < -0.4)).any()):
            return codes.float() * float("nan")
        if bool(((m > -0.9) & (m < -0.8)).any()):
            return codes + 1000
        if bool(((rb > 0.45) & (rb < 0.65)).any()):
            return codes[:, 0]
        return codes


PICKY_CONTRACT = {"input": {"kind": "image", "size_policy": "center-crop", "size": 32, "multiple": 16,
                            "mean": [0.5] * 3, "std": [0.5] * 3},
                  "output": {"dims": ["h", "w"], "vocab_per_codebook": 16}}
# photo -> what Picky does with it (center-crop 32: brightness and red-minus-blue of each)
PICKY_FAILS = {"camera": "RuntimeError", "coffee": "float32 values, not integer", "rocket": "NaN present",
               "hubble_deep_field": "outside [0, 16)", "chelsea": "dims declares [batch="}


def saved(model: torch.nn.Module, contract: dict, path: Path, fmt: str, size: int = 64) -> Path:
    """The model as a TorchScript archive or torch.export program, its contract next to it."""
    if fmt == "torchscript":
        ref.script(model, str(path.with_suffix(".jit")))
    else:
        ref.export(model, str(path.with_suffix(".pt2")), size)
    path.with_suffix(".json").write_text(json.dumps(contract))
    return path.with_suffix(".jit" if fmt == "torchscript" else ".pt2")


def spec(path: Path, **fields) -> TokenizerSpec:
    kind = "torchscript" if path.suffix == ".jit" else "torch-export"
    return TokenizerSpec(kind=kind, path=str(path), **fields)


@pytest.fixture(scope="module")
def small_vqgan(tmp_path_factory):
    root = tmp_path_factory.mktemp("vqgan")
    model = ref.vqgan(**ref.SMALL_VQGAN)
    contract = ref.contract(model, 64)
    return {fmt: saved(model, contract, root / fmt, fmt) for fmt in ("torchscript", "export")}


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_vqgan_codes_do_not_depend_on_batch_size(small_vqgan, fmt):
    photos = [mf.photo(n) for n in mf.PHOTOS] * 2
    runs = {bs: build_tokenizer(spec(small_vqgan[fmt], batch_size=bs)).encode_batch(photos) for bs in (1, 3, 12)}
    assert runs[1].shapes == [[4, 4]] * 12 and len(runs[1].values) == 12 * 17
    for bs in (3, 12):
        same = float(np.mean(runs[bs].values == runs[1].values))
        print(f"{fmt}: batch {bs} vs 1: {same:.4%} of {len(runs[1].values)} codes equal (fp32)")
        assert same >= 0.999


def test_torchscript_and_export_give_the_same_codes(small_vqgan):
    photos = [mf.photo(n) for n in mf.PHOTOS]
    a, b = (build_tokenizer(spec(small_vqgan[f])).encode_batch(photos).values for f in ("torchscript", "export"))
    assert np.mean(a == b) >= 0.999


def test_fingerprint_holds_model_hash_precision_and_device(small_vqgan):
    fp32 = build_tokenizer(spec(small_vqgan["export"]))
    bf16 = build_tokenizer(spec(small_vqgan["export"], precision="bf16"))
    assert fp32.options()["precision"] == "fp32" and fp32.options()["device"] == "cpu"
    assert fp32.fingerprint != bf16.fingerprint
    assert [p.suffix for p in fp32.files()] == [".pt2", ".json"] and fp32.batch_size == 1
    photos = [mf.photo(n) for n in mf.PHOTOS]
    agree = float(np.mean(fp32.encode_batch(photos).values == bf16.encode_batch(photos).values))
    print(f"bf16 vs fp32 on CPU: {agree:.1%} of codes equal")
    assert len(bf16.encode_batch(photos).values) == 6 * 17


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_a_run_driver_fingerprints_the_encoder_without_loading_it(small_vqgan, fmt):
    """What `tokenmill run`'s driver builds (check=False): the same fingerprint and description as the checked
    tokenizer, with no model loaded and, on a machine with no GPU device file, torch not even imported."""
    import os
    import subprocess
    import sys

    from pipeline.tokenizers.device import GPU_DEVICE_FILES
    code = ("import json, sys; from pipeline.spec import TokenizerSpec; from pipeline.tokenizers import build_tokenizer;"
            f"t = build_tokenizer(TokenizerSpec(kind={spec(small_vqgan[fmt]).kind!r}, path={str(small_vqgan[fmt])!r}),"
            " check=False); print(json.dumps([t.fingerprint, t.describe(), t.model is None, 'torch' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    fingerprint, described, unloaded, torch_imported = json.loads(done.stdout)
    checked = build_tokenizer(spec(small_vqgan[fmt]))
    assert checked.model is not None and unloaded
    assert (fingerprint, described) == (checked.fingerprint, json.loads(json.dumps(checked.describe())))
    if not any(os.path.exists(p) for p in GPU_DEVICE_FILES):
        assert not torch_imported


def test_the_device_is_the_one_asked_for_in_the_fingerprint(small_vqgan):
    """`device: cuda` is fingerprinted as cuda wherever the driver runs (it need not see the workers' GPU); a
    driver whose fingerprint says another device than the workers' is told which option to set."""
    from pipeline.job import workers_tokenizer_differs
    on = {d: build_tokenizer(TokenizerSpec(kind="torchscript", path=str(small_vqgan["torchscript"]),
                                           options={"device": d}), check=False) for d in ("cpu", "cuda")}
    assert (on["cpu"].options()["device"], on["cuda"].options()["device"]) == ("cpu", "cuda")
    assert on["cpu"].fingerprint != on["cuda"].fingerprint
    said = workers_tokenizer_differs(on["cpu"].options(), on["cuda"].options())
    assert said.startswith("tokenizer.options.device: the workers run the model on cuda, and this driver"), said
    assert "set tokenizer.options.device: cuda" in said
    assert "precision" in workers_tokenizer_differs(on["cpu"].options(), {**on["cpu"].options(), "precision": "bf16"})
    if not torch.cuda.is_available():
        with pytest.raises(SpecError, match="tokenizer.options.device: cuda, but torch sees no GPU here"):
            on["cuda"].check()
        assert on["cuda"].model is None


def test_audio_residual_vq_time_major_with_offsets(tmp_path):
    model = ref.audio_rvq(ch=4, n_q=4, codes=64)
    path = saved(model, ref.contract(model), tmp_path / "codec", "export")
    tok = build_tokenizer(spec(path))
    assert tok.vocab_size == 4 * 64 + 1
    samples, rate = mf.speech(mf.SENTENCES[0], 24000)
    clip = AudioClip(samples.astype(np.float32), 24000)
    one, batched = (build_tokenizer(spec(path, batch_size=b)).encode_batch([clip, clip]) for b in (1, 8))
    frames = -(-len(samples) // 24000) * 75
    assert one.shapes == [[frames, 4]] * 2
    grid = one.values[:frames * 4].reshape(frames, 4).astype(np.int64)
    assert all(((grid[:, q] >= q * 64) & (grid[:, q] < (q + 1) * 64)).all() for q in range(4))
    print(f"audio rvq: batch 8 vs 1: {np.mean(one.values == batched.values):.4%} of codes equal")
    assert np.mean(one.values == batched.values) >= 0.999


def test_causal_video_clips(tmp_path):
    model = ref.causal_video(ch=4, codes=256)
    path = saved(model, ref.contract(model, 32), tmp_path / "video", "torchscript")
    tok = build_tokenizer(spec(path, batch_size=2))
    clip = VideoClip(mf.pan_frames(20, 96, 64), [i / 8 for i in range(20)])
    batch = tok.encode_batch([clip])
    assert batch.shapes == [[6, 4, 4]] and len(batch.values) == 6 * 16 + 1  # 3 clips of 8 frames, 4x in time


def test_contract_mismatches_are_refused_naming_the_field(tmp_path, small_vqgan):
    model = ref.vqgan(**ref.SMALL_VQGAN)
    good = ref.contract(model, 64)
    cases = {
        "output.dims": ({**good, "output": {**good["output"], "dims": ["q", "h", "w"]}}, "output: .*shape"),
        "codebooks": ({**good, "output": {**good["output"], "dims": ["h", "w"], "codebooks": 2}},
                      "field output: .*'q' dim"),
        "multiple": ({**good, "input": {**good["input"], "size": 64, "multiple": 8}}, "input.multiple"),
        "size": ({**good, "input": {**good["input"], "size": 60}}, "field input: .*multiple"),
        "policy": ({**good, "input": {**good["input"], "size_policy": "squash"}}, "field input.size_policy"),
        "kind": ({**good, "input": {"kind": "audio"}}, "field input: .*sample_rate is required"),
        "typo": ({**good, "output": {**good["output"], "vocab": 3}}, "field output.vocab"),
    }
    for name, (contract, message) in cases.items():
        path = tmp_path / f"{name}.jit"
        path.write_bytes(small_vqgan["torchscript"].read_bytes())
        path.with_suffix(".json").write_text(json.dumps(contract))
        with pytest.raises(SpecError, match=message):
            build_tokenizer(spec(path))
    with pytest.raises(SpecError, match="tokenizer.sample_rate: 16000 but .* declares input.sample_rate = 24000"):
        audio = ref.audio_rvq(ch=4, n_q=2, codes=16)
        build_tokenizer(spec(saved(audio, ref.contract(audio), tmp_path / "a", "torchscript"), sample_rate=16000))


def test_a_program_of_one_shape_is_refused_where_the_contract_gives_others(tmp_path, small_vqgan):
    """`fit` gives images of other shapes than the blank square: a torch.export program exported for 64x64
    only (batch dynamic) is refused when it is checked, with the field and the fix named; the same model as
    TorchScript, which takes any shape, is accepted and codes a 64x32 input to a 4x2 grid."""
    model = ref.vqgan(**ref.SMALL_VQGAN)
    fit = {**ref.contract(model, 64)}
    fit["input"] = {**fit["input"], "size_policy": "fit"}
    program = tmp_path / "fit.pt2"
    program.write_bytes(small_vqgan["export"].read_bytes())
    program.with_suffix(".json").write_text(json.dumps(fit))
    with pytest.raises(SpecError, match=r"fit.json input.size_policy: fit gives inputs of other "
                                        r"shapes, and the model fails on \[3, 64, 32\].*dynamic shapes"):
        build_tokenizer(spec(program))
    archive = tmp_path / "fit.jit"
    archive.write_bytes(small_vqgan["torchscript"].read_bytes())
    archive.with_suffix(".json").write_text(json.dumps(fit))
    tok = build_tokenizer(spec(archive))
    assert tok._call([np.zeros((3, 64, 32), np.float32)])[0].shape == (4, 2)


def test_bad_outputs_fail_their_batch_with_the_reason(tmp_path):
    path = saved(Picky(), PICKY_CONTRACT, tmp_path / "picky", "torchscript")
    tok = build_tokenizer(spec(path, batch_size=4))
    good = mf.photo("astronaut")
    assert len(tok.encode_batch([good, good[:, ::-1].copy()]).values) == 2 * 5
    for name, reason in PICKY_FAILS.items():
        with pytest.raises(Exception, match=re.escape(reason)):
            tok.encode_batch([good, mf.photo(name)])
    with pytest.raises(ValueError, match="takes images"):
        tok.encode_batch([AudioClip(np.zeros(100, np.float32), 16000)])


def test_a_pickle_is_refused(tmp_path):
    pickled = tmp_path / "enc.pt2"
    torch.save(ref.vqgan(**ref.SMALL_VQGAN).state_dict(), pickled)
    pickled.with_suffix(".json").write_text(json.dumps(ref.contract(ref.vqgan(**ref.SMALL_VQGAN), 64)))
    with pytest.raises(SpecError, match="not a torch.export program"):
        build_tokenizer(spec(pickled))
    dot_pt = pickled.rename(tmp_path / "enc.pt")
    dot_pt.with_suffix(".json").write_text(pickled.with_suffix(".json").read_text())
    with pytest.raises(SpecError, match="a .pt pickle is never loaded"):
        build_tokenizer(TokenizerSpec(kind="torch-export", path=str(dot_pt)))
    with pytest.raises(SpecError, match="not a TorchScript archive"):
        build_tokenizer(TokenizerSpec(kind="torchscript", path=str(dot_pt)))


def test_a_factory_runs_only_with_trust_code(tmp_path):
    contract = tmp_path / "vq.json"
    contract.write_text(json.dumps(ref.contract(ref.vqgan(**ref.SMALL_VQGAN), 64)))
    factory = "pipeline.tokenizers.encoder_reference:small_vqgan"
    with pytest.raises(SpecError, match="tokenizer.trust_code: .*set trust_code: true"):
        build_tokenizer(TokenizerSpec(kind="torch-factory", path=str(contract), factory=factory))
    tok = build_tokenizer(TokenizerSpec(kind="torch-factory", path=str(contract), factory=factory, trust_code=True))
    assert tok.files()[0].name == "encoder_reference.py"
    assert tok.encode_batch([mf.photo("astronaut")]).shapes == [[4, 4]]
    with pytest.raises(SpecError, match="tokenizer.factory"):
        build_tokenizer(TokenizerSpec(kind="torch-factory", path=str(contract), factory="no.such:thing",
                                      trust_code=True))
