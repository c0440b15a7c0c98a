"""video: frames through the image codebook, shape [frames, rows, cols]."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.decoders.video import VideoClip
from pipeline.spec import TokenizerSpec
from pipeline.tokenizers import build_tokenizer
from tests import media_fixtures as mf


@pytest.fixture(scope="module")
def codebook(tmp_path_factory):
    return mf.image_codebook(tmp_path_factory.mktemp("vcb"))


def test_video_codes_are_the_image_codes_of_each_frame(codebook):
    frames = mf.pan_frames(6, 192, 144)
    video = build_tokenizer(TokenizerSpec(kind="video", path=str(codebook), fps=5))
    image = build_tokenizer(TokenizerSpec(kind="image-vq", path=str(codebook)))
    batch = video.encode_batch([VideoClip(frames, [i / 5 for i in range(6)]), VideoClip(frames[:2], [0.0, 0.2])])
    assert batch.shapes == [[6, 6, 8], [2, 6, 8]]
    assert list(batch.lengths()) == [6 * 48 + 1, 2 * 48 + 1]
    per_frame = image.encode_batch(list(frames))
    expected = np.concatenate([per_frame.values[per_frame.offsets[i]:per_frame.offsets[i + 1] - 1] for i in range(6)])
    assert np.array_equal(batch.values[:288], expected)
    assert video.decode_hints() == {"fps": 5.0, "size": 128, "patch": 16}


def test_video_decode_is_a_stack_of_frames(codebook):
    video = build_tokenizer(TokenizerSpec(kind="video", path=str(codebook), fps=2))
    batch = video.encode_batch([VideoClip(mf.pan_frames(3, 192, 144), [0, 0.5, 1])])
    frames = video.decode(batch.values, batch.shapes[0])
    assert frames.shape == (3, 96, 128, 3)
    assert video.fingerprint != build_tokenizer(TokenizerSpec(kind="video", path=str(codebook), fps=5)).fingerprint
