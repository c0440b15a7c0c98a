"""Audio tokenizers: `audio-mulaw` (one 8-bit mu-law id per sample) and `audio-vq` (log-mel codes).

`audio-vq` turns audio into log-mel frames (Hann window, `n_fft`, `hop`, `n_mels` HTK
filters), rounds each to whole dB in [-100, 60] and takes the nearest learned code per
frame: `shape` [frames], 50 tokens a second with the defaults (16 kHz, hop 320). Features
are computed with numpy on the CPU so both devices search the very same integers. Decoding
is approximate: code -> mel power -> linear spectrum (pseudo-inverse) -> Griffin-Lim.
Both refuse NaN or infinite samples (ValueError), which the unit quarantines clip by clip.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.decoders.audio import AudioClip
from pipeline.tokenizers.base import TokenBatch, Tokenizer
from pipeline.tokenizers.codebook import load_codebook
from pipeline.tokenizers.image import with_eos

MU = 255
DEFAULT_RATE = 16000
DB_MIN, DB_MAX = -100, 60
MEL_DEFAULTS = {"sample_rate": DEFAULT_RATE, "n_fft": 512, "hop": 320, "n_mels": 64}


def check_finite(samples: list[AudioClip]) -> None:
    """Refuse clips holding NaN or inf (they have no id); the unit then quarantines that clip alone."""
    for clip in samples:
        bad = int(np.count_nonzero(~np.isfinite(clip.samples)))
        if bad:
            raise ValueError(f"audio holds {bad} NaN or infinite samples")


def mulaw_encode(samples: np.ndarray) -> np.ndarray:
    """Samples in [-1, 1] -> ids 0..255 (8-bit mu-law, mu = 255)."""
    x = np.clip(samples, -1.0, 1.0)
    y = np.sign(x) * np.log1p(MU * np.abs(x)) / np.log1p(MU)
    return np.floor((y + 1.0) / 2.0 * MU + 0.5).astype(np.uint32)


def mulaw_decode(ids: np.ndarray) -> np.ndarray:
    y = np.asarray(ids, np.float64) / MU * 2.0 - 1.0
    return (np.sign(y) * ((1.0 + MU) ** np.abs(y) - 1.0) / MU).astype(np.float32)


def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """HTK mel filterbank [n_mels, n_fft // 2 + 1] of triangles."""
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)
    points = 700.0 * (10 ** (np.linspace(0, to_mel(sample_rate / 2), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = points[:-2, None], points[1:-1, None], points[2:, None]
    return np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))


def _frames(samples: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    padded = np.pad(samples.astype(np.float64), (n_fft // 2, n_fft // 2 + n_fft))
    count = 1 + (len(samples) + hop - 1) // hop
    view = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:count]
    return view * np.hanning(n_fft + 1)[:-1]


def log_mel_db(samples: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """int16 [frames, n_mels]: mel power in whole dB, clipped to [DB_MIN, DB_MAX]."""
    spec = np.abs(np.fft.rfft(_frames(samples, cfg["n_fft"], cfg["hop"]), axis=1)) ** 2
    mel = spec @ mel_filters(cfg["sample_rate"], cfg["n_fft"], cfg["n_mels"]).T
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return np.clip(np.rint(db), DB_MIN, DB_MAX).astype(np.int16)


def griffin_lim(magnitude: np.ndarray, n_fft: int, hop: int, iterations: int = 32) -> np.ndarray:
    """Samples whose STFT magnitude approximates `magnitude` [frames, bins] (fixed-seed phases)."""
    window = np.hanning(n_fft + 1)[:-1]
    phase = np.exp(2j * np.pi * np.random.default_rng(0).random(magnitude.shape))
    length = (len(magnitude) - 1) * hop + n_fft
    for _ in range(iterations):
        frames = np.fft.irfft(magnitude * phase, n=n_fft, axis=1) * window
        out, norm = np.zeros(length), np.zeros(length)
        for i, frame in enumerate(frames):
            out[i * hop:i * hop + n_fft] += frame
            norm[i * hop:i * hop + n_fft] += window ** 2
        out /= np.maximum(norm, 1e-8)
        rebuilt = np.fft.rfft(np.lib.stride_tricks.sliding_window_view(out, n_fft)[::hop][:len(magnitude)] * window,
                              axis=1)
        phase = np.exp(1j * np.angle(rebuilt))
    return out[n_fft // 2:].astype(np.float32)


class MuLaw(Tokenizer):
    """The `audio-mulaw` tokenizer: ids 0..255, EOS 256."""

    kind = "audio-mulaw"
    engine = "numpy"

    def __init__(self, sample_rate: int = DEFAULT_RATE, add_eos: bool = True) -> None:
        self.sample_rate = int(sample_rate)
        self.add_eos = add_eos
        self.eos_id = 256 if add_eos else None
        self.vocab_size = 257 if add_eos else 256

    def options(self) -> dict[str, Any]:
        return {"add_eos": self.add_eos, "sample_rate": self.sample_rate}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": self.options()}

    def decode_hints(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate}

    def encode_batch(self, samples: list[AudioClip]) -> TokenBatch:
        check_finite(samples)
        batch = with_eos([mulaw_encode(c.samples) for c in samples], self.eos_id)
        batch.shapes = [[len(c.samples)] for c in samples]
        return batch

    def decode(self, ids: np.ndarray, shape: list[int] | None = None) -> AudioClip:
        ids = np.asarray(ids, np.int64)
        return AudioClip(mulaw_decode(ids[ids < 256]), self.sample_rate)


class AudioVQ(Tokenizer):
    """The `audio-vq` tokenizer: one code per log-mel frame."""

    kind = "audio-vq"

    def __init__(self, path: str, add_eos: bool = True, device: str = "auto") -> None:
        self.book = load_codebook(path, "audio")
        self.cfg = {k: int(self.book.config[k]) for k in MEL_DEFAULTS}
        self.add_eos, self.device = add_eos, device
        k = len(self.book.vectors)
        self.eos_id = k if add_eos else None
        self.vocab_size = k + 1 if add_eos else k
        self.engine = "torch"
        self._search = None

    def files(self):
        return self.book.files

    def options(self) -> dict[str, Any]:
        return {"add_eos": self.add_eos}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": self.options()}

    def codebook(self) -> np.ndarray:
        return self.book.vectors.astype(np.float32)

    def decode_hints(self) -> dict[str, Any]:
        return {"sample_rate": self.cfg["sample_rate"]}

    def encode_batch(self, samples: list[AudioClip]) -> TokenBatch:
        if self._search is None:
            from pipeline.tokenizers.device import NearestCode
            self._search = NearestCode(self.book.vectors, max(-DB_MIN, DB_MAX), self.device)
        check_finite(samples)
        feats = [log_mel_db(c.samples, self.cfg) for c in samples]
        codes = self._search(np.concatenate(feats)) if feats else np.zeros(0, np.int64)
        bounds = np.cumsum([0] + [len(f) for f in feats])
        batch = with_eos([codes[bounds[i]:bounds[i + 1]] for i in range(len(feats))], self.eos_id)
        batch.shapes = [[len(f)] for f in feats]
        return batch

    def decode(self, ids: np.ndarray, shape: list[int] | None = None) -> AudioClip:
        """Approximate audio: mean log-mel frame of each code, inverted with Griffin-Lim."""
        ids = np.asarray(ids, np.int64)
        ids = ids[ids < len(self.book.vectors)]
        power = 10.0 ** (self.book.vectors[ids].astype(np.float64) / 10.0)
        fb = mel_filters(self.cfg["sample_rate"], self.cfg["n_fft"], self.cfg["n_mels"])
        linear = np.maximum(power @ np.linalg.pinv(fb).T, 0.0)
        samples = griffin_lim(np.sqrt(linear), self.cfg["n_fft"], self.cfg["hop"])
        return AudioClip(samples / max(1e-6, float(np.abs(samples).max())) * 0.9, self.cfg["sample_rate"])


def build_mulaw(spec) -> MuLaw:
    return MuLaw(spec.sample_rate or DEFAULT_RATE, spec.add_eos)


def build_audio_vq(spec) -> AudioVQ:
    return AudioVQ(spec.path, spec.add_eos, spec.options.device or "auto")
