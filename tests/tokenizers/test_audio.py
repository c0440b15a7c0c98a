"""audio-mulaw and audio-vq on real speech: ids, shapes, exact codes, and what decoding gives back."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.decoders.audio import AudioClip, resample
from pipeline.spec import TokenizerSpec
from pipeline.tokenizers import build_tokenizer
from pipeline.tokenizers.audio import log_mel_db, mulaw_decode, mulaw_encode
from tests import media_fixtures as mf


@pytest.fixture(scope="module")
def clip() -> AudioClip:
    samples, rate = mf.speech(mf.SENTENCES[1])
    return AudioClip(resample(samples, rate, 16000), 16000)


def test_mulaw_ids_and_round_trip(clip):
    tok = build_tokenizer(TokenizerSpec(kind="audio-mulaw", sample_rate=16000))
    batch = tok.encode_batch([clip])
    assert batch.shapes == [[len(clip.samples)]] and len(batch) == 1
    assert batch.values[-1] == 256 and batch.values[:-1].max() <= 255 and tok.vocab_size == 257
    back = tok.decode(batch.values).samples
    assert len(back) == len(clip.samples)
    snr = 10 * np.log10(np.sum(clip.samples ** 2) / np.sum((back - clip.samples) ** 2))
    assert snr > 25, snr  # 8-bit mu-law keeps speech at ~30-40 dB SNR


def test_mulaw_is_monotonic_and_symmetric():
    x = np.linspace(-1, 1, 1001)
    ids = mulaw_encode(x)
    assert np.all(np.diff(ids.astype(int)) >= 0) and ids[0] == 0 and ids[-1] == 255
    assert np.abs(mulaw_decode(np.arange(256)) + mulaw_decode(255 - np.arange(256))).max() < 0.02


@pytest.fixture(scope="module")
def codebook(tmp_path_factory) -> Path:
    return mf.audio_codebook(tmp_path_factory.mktemp("acb"), k=32)


def test_audio_vq_one_code_per_frame_equal_to_brute_force(clip, codebook):
    tok = build_tokenizer(TokenizerSpec(kind="audio-vq", path=str(codebook)))
    batch = tok.encode_batch([clip, AudioClip(clip.samples[:8000], 16000)])
    frames = 1 + (len(clip.samples) + 319) // 320
    assert batch.shapes == [[frames], [26]]           # 50 frames a second, hop 320 at 16 kHz
    feats = log_mel_db(clip.samples, tok.cfg).astype(np.int64)
    codes = tok.book.vectors.astype(np.int64)
    expected = np.argmin(((feats[:, None, :] - codes[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(batch.values[:frames], expected)
    assert len(np.unique(expected)) > 8               # speech uses many codes, not one


def test_audio_vq_decode_gives_speech_like_audio(clip, codebook):
    tok = build_tokenizer(TokenizerSpec(kind="audio-vq", path=str(codebook)))
    batch = tok.encode_batch([clip])
    back = tok.decode(batch.values)
    assert back.sample_rate == 16000 and abs(len(back.samples) - len(clip.samples)) < 1000
    loud = np.abs(clip.samples[: len(back.samples)]) > 0.05  # energy where the speech is, not in silences
    energy = np.abs(back.samples[: len(loud)])
    assert energy[loud[: len(energy)]].mean() > 2 * energy[~loud[: len(energy)]].mean()


def test_every_audio_tokenizer_refuses_nan_and_inf(clip, codebook, tmp_path):
    """A float WAV may hold NaN or inf; no id stands for them, so the clip is refused (the unit quarantines it)."""
    import soundfile as sf
    bad = np.ascontiguousarray(clip.samples.copy())
    bad[100:200], bad[-1] = np.nan, np.inf
    sf.write(tmp_path / "nan.wav", bad, clip.sample_rate, subtype="FLOAT")
    read_back, rate = sf.read(tmp_path / "nan.wav", dtype="float32")
    assert np.isnan(read_back).sum() == 100  # a real float WAV keeps them
    for spec in (TokenizerSpec(kind="audio-mulaw", sample_rate=16000), TokenizerSpec(kind="audio-vq", path=str(codebook))):
        tok = build_tokenizer(spec)
        with pytest.raises(ValueError, match="audio holds 101 NaN or infinite samples"):
            tok.encode_batch([clip, AudioClip(read_back, rate)])
        assert len(tok.encode_batch([clip])) == 1
