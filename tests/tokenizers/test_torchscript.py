"""torchscript: a user encoder saved with torch.jit.save plugs in; pickles are refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:DeprecationWarning")

from pipeline.decoders.audio import AudioClip
from pipeline.spec import SpecError, TokenizerSpec
from pipeline.tokenizers import build_tokenizer
from tests import media_fixtures as mf


class PatchColourVQ(torch.nn.Module):
    """A VQGAN-shaped toy: 16x16 average colour per patch -> nearest of 8 fixed colours."""

    def __init__(self) -> None:
        super().__init__()
        self.vocab_size = 8
        corners = torch.tensor([[r, g, b] for r in (0.0, 1.0) for g in (0.0, 1.0) for b in (0.0, 1.0)])
        self.register_buffer("colours", corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.avg_pool2d(x, 16)                   # [1, 3, r, c]
        flat = pooled.permute(0, 2, 3, 1).reshape(-1, 3)
        codes = torch.cdist(flat, self.colours).argmin(dim=1)
        return codes.reshape(x.shape[0], pooled.shape[2], pooled.shape[3])


class LoudnessCodec(torch.nn.Module):
    """An EnCodec-shaped toy: 20 ms frames -> 16 loudness levels; ids out of range when asked."""

    def __init__(self, offset: int = 0) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x[:, 0, : x.shape[2] // 320 * 320].reshape(x.shape[0], -1, 320)
        level = (frames.abs().mean(dim=2) * 64).clamp(0, 15).long()
        return level + self.offset


def save(model: torch.nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(model), str(path))
    return path


def test_image_encoder_codes_and_shape(tmp_path):
    tok = build_tokenizer(TokenizerSpec(kind="torchscript", path=str(save(PatchColourVQ(), tmp_path / "vq.pt")),
                                        options={"image_size": 128}))
    assert tok.vocab_size == 9 and tok.eos_id == 8
    image = mf.photo("astronaut")
    batch = tok.encode_batch([image])
    assert batch.shapes == [[8, 8]] and len(batch.values) == 65
    from pipeline.decoders.image import fit_array
    pixels = fit_array(image, 128, 16).astype(np.float32) / 255
    mean = pixels.reshape(8, 16, 8, 16, 3).mean(axis=(1, 3)).reshape(-1, 3)
    corners = np.array([[r, g, b] for r in (0, 1) for g in (0, 1) for b in (0, 1)], np.float32)
    expected = np.argmin(((mean[:, None] - corners[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(batch.values[:64], expected)


def test_audio_encoder_with_vocab_from_options(tmp_path):
    path = save(LoudnessCodec(), tmp_path / "codec.pt")
    with pytest.raises(SpecError, match="vocab_size"):
        build_tokenizer(TokenizerSpec(kind="torchscript", path=str(path)))
    tok = build_tokenizer(TokenizerSpec(kind="torchscript", path=str(path), sample_rate=16000,
                                        options={"vocab_size": 16}))
    samples, rate = mf.speech(mf.SENTENCES[0], 16000)
    batch = tok.encode_batch([AudioClip(samples.astype(np.float32), 16000)])
    assert batch.shapes == [[len(samples) // 320]] and batch.values[:-1].max() > 0


def test_ids_outside_the_vocabulary_fail_the_sample(tmp_path):
    path = save(LoudnessCodec(offset=100), tmp_path / "bad.pt")
    tok = build_tokenizer(TokenizerSpec(kind="torchscript", path=str(path), options={"vocab_size": 16}))
    with pytest.raises(ValueError, match="outside"):
        tok.encode_batch([AudioClip(np.ones(3200, np.float32) * 0.1, 16000)])


def test_a_pickle_is_never_loaded(tmp_path):
    pickled = tmp_path / "model.pt"
    torch.save(PatchColourVQ().state_dict(), pickled)  # a plain pickle archive, not TorchScript
    with pytest.raises(SpecError, match="not a TorchScript archive"):
        build_tokenizer(TokenizerSpec(kind="torchscript", path=str(pickled), options={"vocab_size": 8}))
