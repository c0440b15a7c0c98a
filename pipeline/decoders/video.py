"""Video decoding with PyAV (MP4/H.264, WebM/VP9, MKV, ...): frames sampled at `fps`, resized.

Every frame must be decoded (inter-frame codecs), but only sampled frames are converted to
RGB, and they are scaled by swscale straight to the tokenizer's grid: conversion, not
decoding, dominates at high resolutions, so sampling at 1-5 fps saves most of the work.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from pipeline.decoders.image import grid_dims
from pipeline.errors import EMPTY, DecodeError
from pipeline.sources import RawRecord
from pipeline.spec import SourceSpec


@dataclass
class VideoClip:
    """Sampled RGB frames [F, H, W, 3] and their presentation times in seconds."""

    frames: np.ndarray
    times: list[float]


def _check_limits(record: RawRecord, container, stream, source: SourceSpec) -> None:
    seconds = container.duration / 1e6 if container.duration else None
    if seconds is not None and seconds > source.limits.max_seconds:
        raise DecodeError(record.source, record.member,
                          f"{seconds:.1f} s of video, over limits.max_seconds={source.limits.max_seconds}")
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > source.limits.max_pixels:
        raise DecodeError(record.source, record.member,
                          f"{width}x{height} frames, over limits.max_pixels={source.limits.max_pixels:,}")


def _sample(record: RawRecord, container, stream, source: SourceSpec, fps: float | None,
            target: tuple[int, int] | None) -> VideoClip:
    frames, times = [], []
    next_slot = 0
    for index, frame in enumerate(container.decode(stream)):
        t = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 25)
        slot = math.floor(t * fps + 1e-6) if fps else index
        if slot < next_slot:
            continue
        next_slot = slot + 1
        if len(frames) >= source.limits.max_frames:
            raise DecodeError(record.source, record.member,
                              f"more than limits.max_frames={source.limits.max_frames} sampled frames")
        width, height = target or (frame.width, frame.height)
        frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
        times.append(round(t, 6))
    if not frames:
        raise DecodeError(record.source, record.member, "no decodable video frames")
    return VideoClip(np.stack(frames), times)


def decode_video(record: RawRecord, source: SourceSpec, fps: float | None = None, size: int | None = None,
                 patch: int | None = None) -> VideoClip:
    """Frames at `fps` (all frames when None), resized to the tokenizer's grid when size/patch are given."""
    import av
    data = record.data.encode("utf-8") if isinstance(record.data, str) else record.data
    if not data:
        raise DecodeError(record.source, record.member, "empty file (zero bytes)", EMPTY)
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["none"]
                raise DecodeError(record.source, record.member, f"no video stream (streams: {', '.join(kinds)})")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            _check_limits(record, container, stream, source)
            ctx = stream.codec_context
            target = grid_dims(ctx.width, ctx.height, size, patch) if size and patch and ctx.width else None
            record.meta.update(width=ctx.width, height=ctx.height, codec=ctx.name,
                               seconds=round(container.duration / 1e6, 3) if container.duration else None)
            return _sample(record, container, stream, source, fps, target)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise DecodeError(record.source, record.member, f"not decodable video: {exc}") from exc
