"""image-vq: grids of nearest codes, exact against brute force, approximate decode, safe codebook files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.spec import SpecError, TokenizerSpec
from pipeline.tokenizers import build_tokenizer
from pipeline.tokenizers.image import patchify, unpatchify
from tests import media_fixtures as mf


@pytest.fixture(scope="module")
def codebook(tmp_path_factory) -> Path:
    return mf.image_codebook(tmp_path_factory.mktemp("cb"))


def brute_force(patches: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Nearest code by exact int64 distances, first index on ties."""
    diff = patches.astype(np.int64)[:, None, :] - codes.astype(np.int64)[None, :, :]
    return np.argmin((diff * diff).sum(-1), axis=1)


def test_patchify_round_trip():
    pixels = mf.photo("chelsea")[:96, :128]
    patches = patchify(pixels, 16)
    assert patches.shape == (6 * 8, 16 * 16 * 3)
    assert np.array_equal(patches[9], pixels[16:32, 16:32].reshape(-1))  # row 1, col 1
    assert np.array_equal(unpatchify(patches, 6, 8, 16), pixels)


def test_codes_equal_brute_force_and_shape(codebook):
    tok = build_tokenizer(TokenizerSpec(kind="image-vq", path=str(codebook)))
    images = [mf.photo("astronaut"), mf.photo("coffee")]
    batch = tok.encode_batch(images)
    assert batch.shapes == [[8, 8], [5, 8]]          # 128 px long side, 16 px patches, aspect kept
    assert list(batch.lengths()) == [65, 41]          # grid + EOS
    assert batch.values[batch.offsets[1] - 1] == tok.eos_id == 64 and tok.vocab_size == 65
    from pipeline.decoders.image import fit_array
    expected = brute_force(patchify(fit_array(images[1], 128, 16), 16), tok.quantizer.book.vectors)
    assert np.array_equal(batch.values[65:105], expected)


def test_decode_resembles_the_image(codebook):
    tok = build_tokenizer(TokenizerSpec(kind="image-vq", path=str(codebook)))
    from pipeline.decoders.image import fit_array
    image = fit_array(mf.photo("astronaut"), 128, 16)
    batch = tok.encode_batch([image])
    rebuilt = tok.decode(batch.values, batch.shapes[0]).astype(float)
    assert rebuilt.shape == image.shape
    other = fit_array(mf.photo("camera"), 128, 16).astype(float)
    error, unrelated = np.abs(rebuilt - image).mean(), np.abs(other - image).mean()
    assert error < 0.5 * unrelated, (error, unrelated)


def test_same_codes_on_repeat_and_in_different_batches(codebook):
    tok = build_tokenizer(TokenizerSpec(kind="image-vq", path=str(codebook)))
    alone = tok.encode_batch([mf.photo("rocket")])
    together = tok.encode_batch([mf.photo("camera"), mf.photo("rocket")])
    n = int(together.offsets[1])
    assert np.array_equal(alone.values, together.values[n:])


def test_codebook_that_is_not_safetensors_is_refused(tmp_path, codebook):
    fake = mf.not_safetensors(tmp_path / "image.safetensors")
    (tmp_path / "image.json").write_text(codebook.with_suffix(".json").read_text())
    with pytest.raises(SpecError, match="not a safetensors file"):
        build_tokenizer(TokenizerSpec(kind="image-vq", path=str(fake)))


def test_audio_codebook_is_not_an_image_codebook(tmp_path):
    audio = mf.audio_codebook(tmp_path, k=8)
    with pytest.raises(SpecError, match="not a image codebook"):
        build_tokenizer(TokenizerSpec(kind="image-vq", path=str(audio)))


def test_fingerprint_follows_the_codebook(codebook, tmp_path):
    tok = build_tokenizer(TokenizerSpec(kind="image-vq", path=str(codebook)))
    assert [p.name for p in tok.files()] == ["image.safetensors", "image.json"]
    assert tok.fingerprint == build_tokenizer(TokenizerSpec(kind="image-vq", path=str(codebook))).fingerprint
    no_eos = build_tokenizer(TokenizerSpec(kind="image-vq", path=str(codebook), add_eos=False))
    assert no_eos.eos_id is None and no_eos.vocab_size == tok.vocab_size - 1
    import shutil
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(codebook.with_suffix(suffix), tmp_path / f"image{suffix}")
    (tmp_path / "image.json").write_text(codebook.with_suffix(".json").read_text().replace('"seed": 0', '"seed": 1'))
    other = build_tokenizer(TokenizerSpec(kind="image-vq", path=str(tmp_path / "image.safetensors")))
    assert other.fingerprint != tok.fingerprint
