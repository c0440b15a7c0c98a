"""Audio decoding: soundfile (WAV, FLAC, OGG) with PyAV for the rest (MP3, AAC, Opus, ...).

Output is mono float32 at the tokenizer's sample rate (FFmpeg's resampler via PyAV).
libsndfile silently reads what is left of a WAV cut in the middle, so the RIFF `data`
chunk's declared size is checked against the bytes present: a cut file is quarantined,
never tokenized as a shorter clip. Float audio holding NaN or inf is quarantined too.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np

from pipeline.errors import EMPTY, DecodeError
from pipeline.sources import RawRecord
from pipeline.spec import SourceSpec


@dataclass
class AudioClip:
    """Mono samples in [-1, 1] and their rate."""

    samples: np.ndarray  # float32 [n]
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def wav_truncation(data: bytes) -> str | None:
    """Why a RIFF/WAVE file is cut short (declared data size vs bytes present), else None."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"data":
            have = len(data) - pos - 8
            if size not in (0, 0xFFFFFFFF) and have < size:
                return f"WAV cut short: data chunk declares {size} bytes, file holds {have}"
            return None
        pos += 8 + size + (size & 1)
    return "WAV has no data chunk (cut short?)"


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Mono float32 samples from `rate` to `target` with FFmpeg's resampler."""
    if rate == target or not len(samples):
        return samples.astype(np.float32, copy=False)
    import av
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32)[None, :], format="flt",
                                       layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
    out = [f.to_ndarray()[0] for f in resampler.resample(frame)] + [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, np.float32)


def _soundfile(record: RawRecord, data: bytes, max_seconds: float) -> AudioClip | None:
    """Decode with libsndfile; None when it does not know the format (PyAV is tried next)."""
    import soundfile as sf
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    if info.samplerate and info.frames / info.samplerate > max_seconds:
        raise DecodeError(record.source, record.member,
                          f"{info.frames / info.samplerate:.1f} s of audio, over limits.max_seconds={max_seconds}")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DecodeError(record.source, record.member, f"corrupt or truncated {info.format} audio: {exc}") from exc
    return AudioClip(samples.mean(axis=1, dtype=np.float32), rate)


def _pyav(record: RawRecord, data: bytes, max_seconds: float) -> AudioClip:
    """Decode any FFmpeg audio format to mono float32 at its own rate."""
    import av
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise DecodeError(record.source, record.member, "no audio stream")
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks, total = [], 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray()[0])
                    total += out.samples
                if total > max_seconds * rate:
                    raise DecodeError(record.source, record.member, f"over limits.max_seconds={max_seconds}")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DecodeError(record.source, record.member, f"not decodable audio: {exc}") from exc
    if not chunks:
        raise DecodeError(record.source, record.member, "no audio samples decoded")
    return AudioClip(np.concatenate(chunks).astype(np.float32, copy=False), rate)


def decode_audio(record: RawRecord, source: SourceSpec, sample_rate: int | None = None) -> AudioClip:
    """Mono float32 audio, resampled to `sample_rate` when given."""
    data = record.data.encode("utf-8") if isinstance(record.data, str) else record.data
    if not data:
        raise DecodeError(record.source, record.member, "empty file", EMPTY)
    cut = wav_truncation(data)
    if cut:
        raise DecodeError(record.source, record.member, cut)
    max_seconds = source.limits.max_seconds
    clip = _soundfile(record, data, max_seconds) or _pyav(record, data, max_seconds)
    if not len(clip.samples):
        raise DecodeError(record.source, record.member, "audio has no samples")
    bad = int(np.count_nonzero(~np.isfinite(clip.samples)))
    if bad:  # a float WAV can hold NaN or inf; no tokenizer can give them an id
        raise DecodeError(record.source, record.member, f"audio holds {bad} NaN or infinite samples")
    record.meta.update(sample_rate=clip.sample_rate, seconds=round(clip.seconds, 3))
    if sample_rate and sample_rate != clip.sample_rate:
        clip = AudioClip(resample(clip.samples, clip.sample_rate, sample_rate), sample_rate)
    return clip
