"""`video`: frames sampled at `fps`, each through the image codebook; `shape` [frames, rows, cols].

`path` is an image-vq codebook (`tokenmill train --modality image`), so images and video
of one corpus share a vocabulary. Every frame of every clip in a batch goes through one
nearest-code search call. The temporal stage can then drop patches that did not change.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.decoders.video import VideoClip
from pipeline.tokenizers.base import TokenBatch
from pipeline.tokenizers.image import ImageVQ, with_eos

DEFAULT_FPS = 1.0


class VideoVQ(ImageVQ):
    """The `video` tokenizer: every sampled frame through the image codebook."""

    kind = "video"

    def __init__(self, path: str, fps: float = DEFAULT_FPS, add_eos: bool = True, device: str = "auto") -> None:
        super().__init__(path, add_eos, device)
        self.fps = float(fps)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "fps": self.fps}

    def decode_hints(self) -> dict[str, Any]:
        return {"fps": self.fps, "size": self.quantizer.size, "patch": self.quantizer.patch}

    def encode_batch(self, samples: list[VideoClip]) -> TokenBatch:
        frames = [frame for clip in samples for frame in clip.frames]
        grids = self.quantizer.grids(frames)
        codes, shapes, at = [], [], 0
        for clip in samples:
            n = len(clip.frames)
            codes.append(np.concatenate([c for c, _ in grids[at:at + n]]))
            shapes.append([n, *grids[at][1]])
            at += n
        batch = with_eos(codes, self.eos_id)
        batch.shapes = shapes
        return batch

    def decode(self, ids: np.ndarray, shape: list[int] | None = None) -> np.ndarray:
        """Approximate frames [F, H, W, 3] of a sample's tokens; `shape` is [frames, rows, cols]."""
        ids = np.asarray(ids, np.int64)
        ids = ids[ids != self.eos_id] if self.eos_id is not None else ids
        frames, rows, cols = shape if shape else (1, 1, len(ids))
        per = rows * cols
        return np.stack([self.quantizer.render(ids[f * per:(f + 1) * per], rows, cols) for f in range(frames)])


def build_video(spec) -> VideoVQ:
    return VideoVQ(spec.path, spec.fps or DEFAULT_FPS, spec.add_eos, spec.options.device or "auto")
