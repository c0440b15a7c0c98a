"""Any exception a decoder's library raises on one record quarantines that record, in the decode pool too."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.decoders.audio import decode_audio
from pipeline.decoders.image import decode_image
from pipeline.decoders.pool import decode_stream
from pipeline.errors import DecodeError
from pipeline.sources import RawRecord
from pipeline.spec import SourceSpec
from tests import media_fixtures as mf


def record(path: Path) -> RawRecord:
    data = path.read_bytes()
    return RawRecord(str(path), str(path), data, len(data))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    photos = mf.write_gallery(root / "good", 6)
    mf.write_damaged_photos(root / "bad", photos[0], photos[2])
    speech = mf.write_audio(root / "speech")
    (root / "bad-audio").mkdir()
    mf.write_cut_flac(root / "bad-audio" / "cut.flac", speech[1])
    mf.write_nan_wav(root / "bad-audio" / "nan.wav")
    return root


@pytest.mark.parametrize("threads", [0, 2])
def test_damaged_photos_are_decode_errors_between_good_ones(folder, threads):
    good = sorted((folder / "good").iterdir())
    bad = sorted((folder / "bad").iterdir())
    records = [record(p) for pair in zip(good, bad) for p in pair] + [record(p) for p in good[len(bad):]]
    source = SourceSpec(uri="unused", modality="image")
    results = {Path(r.id).name: payload for r, payload in decode_stream(records, decode_image, source, threads)}
    assert all(getattr(results[p.name], "shape", None) for p in good)
    reasons = {name: err.reason for name, err in results.items() if isinstance(err, DecodeError)}
    assert reasons == {
        "cut400.jpg": "corrupt or truncated image: Truncated File Read",  # Pillow's OSError from Image.open
        "cut.webp": "corrupt or truncated image: could not create decoder object",
        "readme.jpg": reasons["readme.jpg"], "huge.png": reasons["huge.png"]}
    assert reasons["readme.jpg"].startswith("not an image") and "decompression bomb" in reasons["huge.png"]


def test_cut_flac_and_nan_wav_are_decode_errors(folder):
    source = SourceSpec(uri="unused", modality="audio")
    items = [record(p) for p in sorted((folder / "bad-audio").iterdir())] + \
        [record(p) for p in sorted((folder / "speech").iterdir())]
    results = {Path(r.id).name: payload for r, payload in decode_stream(items, decode_audio, source, 2)}
    assert results["cut.flac"].reason.startswith("corrupt or truncated FLAC audio")
    assert results["nan.wav"].reason == "audio holds 501 NaN or infinite samples"
    assert sum(not isinstance(p, DecodeError) for p in results.values()) == 4


def test_an_unexpected_exception_is_the_records_decode_error(folder):
    """A decoder bug or a library raising a type nobody listed still costs one record only."""
    def decode(record, source):
        if record.id.endswith("cut400.jpg"):
            return {}["no such key"]
        return decode_image(record, source)
    records = [record(p) for p in sorted((folder / "good").iterdir())] + [record(folder / "bad" / "cut400.jpg")]
    out = list(decode_stream(records, decode, SourceSpec(uri="unused", modality="image"), 2))
    assert isinstance(out[-1][1], DecodeError) and out[-1][1].reason == "decoder failed: KeyError: 'no such key'"
    assert all(getattr(p, "shape", None) for _, p in out[:-1])
