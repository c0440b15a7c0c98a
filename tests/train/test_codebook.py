"""k-means codebooks: deterministic files, integer centroids that fit the data, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.spec import SourceSpec, SpecError
from pipeline.train.codebook import kmeans, train_image_codebook
from tests import media_fixtures as mf


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(1)
    centres = np.array([[10, 10], [200, 40], [90, 230]])
    points = np.concatenate([c + rng.integers(-5, 6, size=(300, 2)) for c in centres])
    found = kmeans(points, 3, seed=0)
    matched = sorted(np.abs(found[:, None] - centres[None]).sum(-1).min(axis=0))
    assert max(matched) < 3


def test_image_codebook_is_deterministic(tmp_path):
    mf.write_photos(tmp_path / "photos")
    source = SourceSpec(uri=str(tmp_path / "photos"), modality="image")
    a = train_image_codebook(source, 32, str(tmp_path / "a.safetensors"), 1 << 30, image_size=96)
    b = train_image_codebook(source, 32, str(tmp_path / "b.safetensors"), 1 << 30, image_size=96)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    config = json.loads((tmp_path / "a.json").read_text())
    assert config["codebook_size"] == 32 and config["dim"] == 768 and config["image_size"] == 96
    assert a["samples"] == 7 and a["vectors"] == b["vectors"] > 32
    from safetensors.numpy import load_file
    codes = load_file(str(tmp_path / "a.safetensors"))["codebook"]
    assert codes.dtype == np.uint8 and len(np.unique(codes, axis=0)) == 32


def test_codebook_size_clamped_to_distinct_vectors(tmp_path):
    mf.write_photos(tmp_path / "photos")
    source = SourceSpec(uri=str(tmp_path / "photos" / "astronaut.jpg"), modality="image")
    result = train_image_codebook(source, 500, str(tmp_path / "c.safetensors"), 1 << 30, image_size=64)
    assert result["codebook_size"] == 16  # one 64x64 image: 16 patches


def test_no_images_is_a_clear_error(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(SpecError, match="no decodable samples"):
        train_image_codebook(SourceSpec(uri=str(tmp_path), modality="image"), 8, str(tmp_path / "x.safetensors"), 1000)
