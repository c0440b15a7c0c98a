"""`tokenmill inspect`: a sample's tokens back to a PNG, WAV, frame strip or text, from the dataset alone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.decode_sample import fill_grid, frame_strip, inspect_sample
from pipeline.job import copy_tokenizer, index_header
from pipeline.ledger import Ledger, build_index, write_index
from pipeline.plan import make_plan
from pipeline.spec import parse_spec
from pipeline.spec import SpecError
from pipeline.unit import UnitProcessor, output_dtype
from tests import media_fixtures as mf


def make_dataset(tmp_path: Path, modality: str, inputs: Path, tokenizer: dict) -> Path:
    """A complete dataset (shards, ledger, tokenizer files, dataset.json) written without Ray."""
    out = tmp_path / f"out-{modality}"
    spec = parse_spec({"name": modality, "source": {"uri": str(inputs), "modality": modality},
                       "tokenizer": tokenizer, "sink": {"uri": str(out)}, "report": False})
    processor = UnitProcessor(spec)
    units = make_plan(spec)
    for unit in units:
        processor(unit)
    copy_tokenizer(processor.storage, processor.tokenizer)
    header = index_header(spec, processor.tokenizer, processor.tokenizer.engine, output_dtype(spec, processor.tokenizer))
    write_index(processor.storage, build_index(Ledger(processor.storage).entries(), units, header))
    return out


@pytest.fixture(scope="module")
def codebook(tmp_path_factory) -> Path:
    return mf.image_codebook(tmp_path_factory.mktemp("icb"), k=64, image_size=128)


def test_image_png_has_the_photo_layout(tmp_path, codebook):
    photos = mf.write_photos(tmp_path / "photos")
    out = make_dataset(tmp_path, "image", tmp_path / "photos", {"kind": "image-vq", "path": str(codebook)})
    # the dataset's own copy of the codebook is used: remove the original
    codebook.rename(codebook.with_suffix(".moved"))
    try:
        written = inspect_sample(str(out), "coffee.png", str(tmp_path / "look"))
    finally:
        codebook.with_suffix(".moved").rename(codebook)
    png = np.asarray(Image.open(written[0]).convert("RGB"), float)
    assert png.shape == (80, 128, 3) and written[1].endswith(".json")
    original = np.asarray(Image.open(photos[1]).convert("RGB").resize((128, 80)), float)
    corr = np.corrcoef(png.mean(-1).ravel(), original.mean(-1).ravel())[0, 1]
    other = np.asarray(Image.fromarray(mf.photo("astronaut")).resize((128, 80)), float)
    assert corr > 0.8 and corr > np.corrcoef(png.mean(-1).ravel(), other.mean(-1).ravel())[0, 1] + 0.3


def test_audio_wav_and_text(tmp_path):
    audio = mf.write_audio(tmp_path / "speech")
    out = make_dataset(tmp_path, "audio", tmp_path / "speech", {"kind": "audio-mulaw", "sample_rate": 8000})
    written = inspect_sample(str(out), audio[0].name, str(tmp_path / "look"))
    import soundfile as sf
    samples, rate = sf.read(written[0])
    assert rate == 8000 and 1.0 < len(samples) / rate < 10 and np.abs(samples).max() > 0.05
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("héllo wörld, bytes survive\n")
    out = make_dataset(tmp_path, "text", docs, {"kind": "bytes"})
    decoded = Path(inspect_sample(str(out), "a.txt", str(tmp_path / "t"))[0])
    assert decoded.name == "a.txt" and decoded.read_text() == "héllo wörld, bytes survive\n"  # its own name


def test_video_frame_strip(tmp_path, codebook):
    mf.write_videos(tmp_path / "vid")
    out = make_dataset(tmp_path, "video", tmp_path / "vid", {"kind": "video", "path": str(codebook), "fps": 2})
    written = inspect_sample(str(out), "pan.webm", str(tmp_path / "look"))
    strip = np.asarray(Image.open(written[0]))
    assert written[0].endswith(".strip.png") and strip.shape == (96, 4 * 128 + 3 * 2, 3)


def test_fill_grid_and_unknown_ids(tmp_path):
    grid = fill_grid(np.array([5, 6, 7, 9]), [0, 3, 5, 99], [2, 2, 2], missing=-7)
    assert list(grid) == [5, -7, -7, 6, 5, 7, -7, 6]   # frame 2 repeats frame 1 where patches were dropped
    assert frame_strip(np.zeros((3, 4, 5, 3), np.uint8)).shape == (4, 19, 3)
    with pytest.raises(SpecError, match="no dataset.json"):
        inspect_sample(str(tmp_path), "x", str(tmp_path / "y"))
