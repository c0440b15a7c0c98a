"""Image, audio and video decoders on real media and on the bad files real corpora contain."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.decoders.audio import decode_audio
from pipeline.decoders.image import decode_image, grid_dims
from pipeline.decoders.video import decode_video
from pipeline.errors import DecodeError
from pipeline.sources import RawRecord
from pipeline.spec import DecodeLimits, SourceSpec
from tests import media_fixtures as mf

SOURCE = SourceSpec(uri="unused", modality="image")


def record(path: Path) -> RawRecord:
    data = path.read_bytes()
    return RawRecord(str(path), str(path), data, len(data))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("media")
    return {"photos": mf.write_photos(root / "img"), "audio": mf.write_audio(root / "aud"),
            "videos": mf.write_videos(root / "vid"), "root": [root]}


def test_images_decode_to_rgb_with_exif_applied(media):
    shapes = {p.name: decode_image(record(p), SOURCE).shape for p in media["photos"]}
    assert shapes["astronaut.jpg"] == (512, 512, 3)
    assert shapes["rocket.gif"] == (427, 640, 3)          # first GIF frame, palette -> RGB
    assert shapes["chelsea.webp"] == (300, 451, 3)
    assert shapes["rotated.jpg"] == (600, 400, 3)          # stored 600x400 landscape, EXIF says rotate 90


def test_image_resized_to_the_tokenizer_grid(media):
    pixels = decode_image(record(media["photos"][1]), SOURCE, size=256, patch=16)  # coffee, 600x400
    assert pixels.shape == (176, 256, 3) == (grid_dims(600, 400, 256, 16)[1], 256, 3)
    original = mf.photo("coffee").astype(float).mean(axis=(0, 1))
    assert np.abs(pixels.astype(float).mean(axis=(0, 1)) - original).max() < 4  # same picture, smaller


def test_bad_images_are_decode_errors_with_reasons(media, tmp_path):
    bad = mf.write_bad_images(tmp_path, media["photos"][0])
    reasons = {}
    for kind, path in bad.items():
        with pytest.raises(DecodeError) as err:
            decode_image(record(path), SOURCE)
        reasons[kind] = err.value.reason
    assert "truncated" in reasons["truncated"]
    assert "decompression bomb" in reasons["bomb"]
    assert "not an image" in reasons["text"]


def test_pixel_limit_from_the_spec(media):
    small = SourceSpec(uri="x", modality="image", limits=DecodeLimits(max_pixels=100_000))
    with pytest.raises(DecodeError, match="max_pixels"):
        decode_image(record(media["photos"][0]), small)


def test_audio_formats_decode_to_mono_at_the_asked_rate(media):
    clips = {p.suffix: decode_audio(record(p), SOURCE, sample_rate=16000) for p in media["audio"]}
    assert set(clips) == {".wav", ".flac", ".ogg", ".mp3"}
    for clip in clips.values():
        assert clip.sample_rate == 16000 and clip.samples.dtype == np.float32 and clip.samples.ndim == 1
        assert 1.0 < clip.seconds < 10.0 and np.abs(clip.samples).max() > 0.05
    wav, mp3 = clips[".wav"].samples, clips[".mp3"].samples  # same sentence, lossless vs MP3
    assert abs(len(wav) - len(mp3)) < 0.05 * len(wav)


def test_bad_audio_is_quarantined_not_shortened(media, tmp_path):
    bad = mf.write_bad_audio(tmp_path, media["audio"][0])
    with pytest.raises(DecodeError, match="cut short"):
        decode_audio(record(bad["cut"]), SOURCE)
    with pytest.raises(DecodeError, match="not decodable audio"):
        decode_audio(record(bad["text"]), SOURCE)
    short = SourceSpec(uri="x", modality="audio", limits=DecodeLimits(max_seconds=0.5))
    with pytest.raises(DecodeError, match="max_seconds"):
        decode_audio(record(media["audio"][1]), short)


def test_video_frames_sampled_at_fps_and_resized(media):
    for path in media["videos"]:
        clip = decode_video(record(path), SOURCE, fps=5, size=128, patch=16)
        assert clip.frames.shape == (10, 96, 128, 3), path.name   # 2 s at 5 fps, 192x144 -> 128x96
        assert clip.times[1] - clip.times[0] == pytest.approx(0.2, abs=0.01)
    everything = decode_video(record(media["videos"][0]), SOURCE)
    assert everything.frames.shape == (48, 144, 192, 3)
    first = mf.pan_frames()[0].astype(float)
    assert np.abs(everything.frames[0].astype(float) - first).mean() < 10  # H.264 of the same pixels


def test_bad_videos(tmp_path):
    bad = mf.write_bad_videos(tmp_path)
    expected = {"empty": "zero bytes", "no_video": "no video stream", "text": "not decodable video"}
    for kind, path in bad.items():
        with pytest.raises(DecodeError, match=expected[kind]):
            decode_video(record(path), SOURCE, fps=5)
    few = SourceSpec(uri="x", modality="video", limits=DecodeLimits(max_frames=3))
    with pytest.raises(DecodeError, match="max_frames"):
        decode_video(record(mf.write_video(tmp_path / "v.mp4", "libx264", mf.pan_frames(12))), few)
