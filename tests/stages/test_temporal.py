"""The temporal stage: unchanged patches are dropped; with threshold 0 the video grid is recoverable."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline.spec import SpecError, TemporalSpec, check_stages
from pipeline.stages import StageContext, build_stages
from pipeline.tokenizer_spec import TokenizerTraits
from tests.stages.helpers import make_table, patch_codebook, rows, skimage_photos, vq_grid

log = logging.getLogger(__name__)


def temporal(table, threshold=0.0, codebook=None):
    ctx = StageContext("video", 512, codebook=codebook)
    (stage,) = build_stages([TemporalSpec(kind="temporal", threshold=threshold)], ctx)
    return stage(table), stage


def fill_forward(tokens, positions, shape):
    """Rebuild the full grid: a dropped patch repeats its last kept value."""
    grid = np.full(int(np.prod(shape)), -1)
    grid[positions] = tokens
    grid = grid.reshape(shape[0], -1)
    for f in range(1, shape[0]):
        grid[f] = np.where(grid[f] < 0, grid[f - 1], grid[f])
    return grid.reshape(shape)


def test_hand_checked_frames():
    video = np.array([[[1, 2], [3, 4]], [[1, 2], [3, 5]], [[1, 9], [3, 5]]])
    out, stage = temporal(make_table([video.reshape(-1)], shapes=[[3, 2, 2]], modality="video"))
    assert rows(out) == [[1, 2, 3, 4, 5, 9]]
    assert rows(out, "positions") == [[0, 1, 2, 3, 7, 9]]
    assert stage.stats == {"tokens_before": 12, "tokens_after": 6, "reduction": 0.5}


def test_threshold_compares_with_the_last_kept_value_not_the_previous_frame():
    codebook = np.array([[0.0], [0.6], [1.2], [1.8]], np.float32)
    video = np.array([0, 1, 2, 3]).reshape(4, 1, 1)  # drifts 0.6 per frame
    out, _ = temporal(make_table([video.reshape(-1)], shapes=[[4, 1, 1]], modality="video"), 1.0, codebook)
    assert rows(out) == [[0, 2]]  # 1 is within 1.0 of 0; 2 is 1.2 from the kept 0; 3 within 1.0 of 2


def test_empty_and_single_frame_rows_pass_through():
    table = make_table([[], [4, 5, 6, 7]], shapes=[[0, 2, 2], [1, 2, 2]], modality="video")
    out, _ = temporal(table)
    assert rows(out) == [[], [4, 5, 6, 7]] and rows(out, "positions") == [[], [0, 1, 2, 3]]


def test_real_video_reduction(tmp_path):
    av = pytest.importorskip("av")
    photo = skimage_photos(("astronaut",))[0][:256, :256]
    path = tmp_path / "pan.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 256, 256, "yuv420p"
        for k in range(16):  # the lower half pans every 4th frame; the upper half stays still
            frame = photo.copy()
            frame[128:] = np.roll(photo[128:], 8 * (k // 4), axis=1)
            img = av.VideoFrame.from_ndarray((frame * 255).astype(np.uint8), format="rgb24")
            container.mux(stream.encode(img))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24").astype(np.float32) / 255 for f in container.decode(video=0)]
    assert len(decoded) == 16
    codebook = patch_codebook(decoded[:1], 256)
    video = np.stack([vq_grid(f, codebook) for f in decoded])
    table = make_table([video.reshape(-1)], shapes=[list(video.shape)], modality="video")
    exact, s0 = temporal(table)
    assert np.array_equal(fill_forward(np.array(rows(exact)[0]), rows(exact, "positions")[0], video.shape), video)
    near, s1 = temporal(table, 0.5, codebook)
    log.info("temporal reduction on a real h264 pan: exact %.3f, threshold 0.5 %.3f",
             s0.stats["reduction"], s1.stats["reduction"])
    assert 0.3 < s0.stats["reduction"] < 1 and s1.stats["reduction"] >= s0.stats["reduction"]


def test_temporal_on_text_is_a_spec_error_naming_stage_and_modality():
    no_codebook = TokenizerTraits(has_codebook=False, has_token_bytes=True)
    with pytest.raises(SpecError, match=r"temporal.*modality 'text'"):
        check_stages([TemporalSpec(kind="temporal")], "text", no_codebook)
    with pytest.raises(SpecError, match="codebook"):
        check_stages([TemporalSpec(kind="temporal", threshold=0.5)], "video", no_codebook)
