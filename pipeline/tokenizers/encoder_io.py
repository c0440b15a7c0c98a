"""A decoded sample -> the float pieces an encoder's contract asks for (geometry, range, normalisation).

Pure numpy plus Pillow for resizing, so it runs in any process and is tested without torch.
An image is one piece [3, H, W]; audio is clips [1, T] of clip_seconds (last zero-padded to
a multiple); video is clips [3, F, H, W] of frames_per_clip (last padded with its last frame).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.decoders.audio import AudioClip
from pipeline.decoders.image import fit_array
from pipeline.decoders.video import VideoClip


def geometry(pixels: np.ndarray, io) -> np.ndarray:
    """RGB uint8 [H, W, 3] sized by the size policy: fit (long side, multiples), center-crop, resize."""
    from PIL import Image
    if io.size_policy == "fit":
        return fit_array(pixels, io.size, io.multiple)
    height, width = pixels.shape[:2]
    if io.size_policy == "center-crop":
        scale = io.size / min(height, width)
        w, h = max(io.size, round(width * scale)), max(io.size, round(height * scale))
        if (w, h) != (width, height):
            pixels = np.asarray(Image.fromarray(pixels).resize((w, h), Image.Resampling.BICUBIC))
        top, left = (h - io.size) // 2, (w - io.size) // 2
        return pixels[top:top + io.size, left:left + io.size]
    if (width, height) == (io.size, io.size):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((io.size, io.size), Image.Resampling.BICUBIC))


def normalise(pixels: np.ndarray, io) -> np.ndarray:
    """uint8 [..., 3] -> float32 [3, ...] in value_range, channel order applied, then (x - mean) / std."""
    lo, hi = io.value_range or (0.0, 1.0)
    x = pixels.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)
    if io.channel_order == "bgr":
        x = x[..., ::-1]
    if io.mean is not None:
        x = x - np.asarray(io.mean, np.float32)
    if io.std is not None:
        x = x / np.asarray(io.std, np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, 0))


def audio_pieces(clip: AudioClip, io) -> list[np.ndarray]:
    if clip.sample_rate != io.sample_rate:
        raise ValueError(f"audio at {clip.sample_rate} Hz; the encoder takes {io.sample_rate} Hz")
    lo, hi = io.value_range or (-1.0, 1.0)
    x = np.asarray(clip.samples, np.float32) * np.float32((hi - lo) / 2) + np.float32((hi + lo) / 2)
    if io.mean is not None:
        x = (x - np.float32(io.mean[0])) / np.float32(io.std[0] if io.std else 1.0)
    n = round(io.clip_seconds * io.sample_rate) if io.clip_seconds else len(x)
    n = max(io.multiple, -(-n // io.multiple) * io.multiple)
    count = max(1, -(-len(x) // n))
    padded = np.zeros(count * n, np.float32)
    padded[:len(x)] = x
    return [padded[i * n:(i + 1) * n][None] for i in range(count)]


def video_pieces(clip: VideoClip, io) -> list[np.ndarray]:
    frames = np.stack([geometry(f, io) for f in clip.frames])
    per = io.frames_per_clip
    count = -(-len(frames) // per)
    if count * per > len(frames):
        frames = np.concatenate([frames, np.repeat(frames[-1:], count * per - len(frames), axis=0)])
    x = normalise(frames, io)                                  # [3, F, H, W]
    return [np.ascontiguousarray(x[:, i * per:(i + 1) * per]) for i in range(count)]


def pieces_of(sample: Any, io) -> list[np.ndarray]:
    """The model inputs for one decoded sample; a sample of another modality is a ValueError."""
    if io.kind == "audio":
        if not isinstance(sample, AudioClip):
            raise ValueError(f"the encoder takes audio, got {type(sample).__name__}")
        return audio_pieces(sample, io)
    if io.kind == "video":
        if not isinstance(sample, VideoClip):
            raise ValueError(f"the encoder takes video, got {type(sample).__name__}")
        return video_pieces(sample, io)
    if not isinstance(sample, np.ndarray) or sample.ndim != 3:
        raise ValueError(f"the encoder takes images, got {type(sample).__name__}")
    return [normalise(geometry(np.asarray(sample, np.uint8), io), io)]
