"""The prune stage: greedy k-center keeps a diverse subset of each image's tokens, with positions."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pipeline.spec import PruneSpec, TemporalSpec
from pipeline.stages import StageContext, build_stages
from pipeline.stages.prune import k_center
from tests.stages.helpers import make_table, patch_codebook, rows, skimage_photos, vq_grid


def prune(table, codebook, keep, modality="image"):
    ctx = StageContext(modality, len(codebook), codebook=codebook)
    (stage,) = build_stages([PruneSpec(kind="prune", keep=keep)], ctx)
    return stage(table), stage


def coverage(codebook, ids, kept_idx):
    """k-center objective: the largest distance from any token to its nearest kept token."""
    emb = codebook[ids].astype(np.float64)
    kept = emb[kept_idx]
    d2 = (emb ** 2).sum(1)[:, None] - 2 * emb @ kept.T + (kept ** 2).sum(1)[None, :]
    return float(np.sqrt(np.maximum(d2.min(axis=1), 0)).max())


def test_hand_checked_clusters_get_one_token_each():
    codebook = np.array([[0, 0], [0.1, 0], [10, 0], [10, 0.1], [0, 10]], np.float32)
    ids = np.array([0, 1, 0, 2, 3, 2, 1, 4, 0])
    assert k_center(codebook, ids, 3).tolist() == [0, 3, 7]  # one per cluster, earliest token of each
    assert k_center(codebook, ids, 9).tolist() == list(range(9))
    assert k_center(codebook, ids, 6).tolist() == [0, 1, 2, 3, 4, 7]  # all 5 codes, then the earliest other token


def test_prune_real_photos_keeps_a_diverse_quarter():
    photos = skimage_photos()
    codebook = patch_codebook(photos, 256)
    grids = [vq_grid(im, codebook) for im in photos]
    table = make_table([g.reshape(-1) for g in grids], shapes=[list(g.shape) for g in grids], modality="image")
    out, stage = prune(table, codebook, 0.25)
    assert out.schema.field("positions").type == pa.list_(pa.int32())
    rng = np.random.default_rng(1)
    for grid, kept, pos, shape in zip(grids, rows(out), rows(out, "positions"), rows(out, "shape")):
        flat = grid.reshape(-1)
        assert len(kept) == int(np.ceil(0.25 * flat.size)) and shape == list(grid.shape)
        assert pos == sorted(set(pos)) and flat[pos].tolist() == kept
        random_cover = np.mean([coverage(codebook, flat, rng.choice(flat.size, len(pos), replace=False))
                                for _ in range(3)])
        assert coverage(codebook, flat, np.array(pos)) < random_cover
    assert stage.stats["tokens_after"] == sum(map(len, rows(out)))
    assert 0.74 < stage.stats["reduction"] < 0.76


def test_keep_as_a_count_and_eos_outside_the_grid(random_codebook):
    docs = [[1, 2, 3, 4, 5, 6, 63], [7], []]
    table = make_table(docs, shapes=[[2, 3], [1, 1], [0, 0]], modality="image")
    cb = random_codebook[:50]  # 63 (an EOS-like id) is outside the codebook: always kept
    out, _ = prune(table, cb, 2)
    got, pos = rows(out), rows(out, "positions")
    assert len(got[0]) == 3 and got[0][-1] == 63 and pos[0][-1] == 6
    assert got[1] == [7] and pos[1] == [0] and got[2] == [] and pos[2] == []


def test_video_frames_are_pruned_one_by_one_and_compose_with_temporal(random_codebook):
    frames = np.random.default_rng(2).integers(0, 64, size=(3, 4, 4))
    frames[1] = frames[0]  # a still frame: temporal drops it whole
    table = make_table([frames.reshape(-1)], shapes=[[3, 4, 4]], modality="video")
    ctx = StageContext("video", 64, codebook=random_codebook)
    stages = build_stages([TemporalSpec(kind="temporal"), PruneSpec(kind="prune", keep=0.5)], ctx)
    out = stages[1](stages[0](table))
    pos = np.array(rows(out, "positions")[0])
    assert np.array_equal(frames.reshape(-1)[pos], rows(out)[0])
    per_frame = np.bincount(pos // 16, minlength=3)
    changed = int((frames[2] != frames[1]).sum())
    assert per_frame.tolist() == [8, 0, int(np.ceil(changed / 2))]


def test_prune_without_codebook_or_with_fractional_count_is_a_spec_error():
    from pipeline.spec import SpecError, check_stages
    from pipeline.tokenizer_spec import TokenizerTraits
    with pytest.raises(SpecError, match=r"stages\[0\] \(prune\): needs a tokenizer with a codebook"):
        check_stages([PruneSpec(kind="prune")], "image", TokenizerTraits(has_codebook=False, has_token_bytes=False))
    with pytest.raises(ValueError, match="whole number"):
        PruneSpec(kind="prune", keep=2.5)
