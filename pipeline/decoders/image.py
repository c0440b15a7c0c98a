"""Image decoding with Pillow: JPEG, PNG, WebP, GIF (first frame), BMP, TIFF -> RGB uint8 arrays.

The pixel limit is checked on the header, before any pixel is decoded, so a PNG that claims
50,000 x 50,000 pixels costs a few hundred bytes of parsing. EXIF orientation is applied.
Given a target `size`/`patch` (the tokenizer's grid), JPEGs are decoded at reduced scale
(`draft`) and resized here, in the decode threads, so the encoder gets ready grids.
"""
from __future__ import annotations

import io
import warnings

import numpy as np

from pipeline.errors import EMPTY, DecodeError
from pipeline.sources import RawRecord
from pipeline.spec import SourceSpec

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


def grid_dims(width: int, height: int, size: int, patch: int) -> tuple[int, int]:
    """(width, height) scaled so the long side is `size`, each rounded to a multiple of `patch`."""
    scale = size / max(width, height)
    return (max(patch, round(width * scale / patch) * patch),
            max(patch, round(height * scale / patch) * patch))


def fit_array(pixels: np.ndarray, size: int, patch: int) -> np.ndarray:
    """An RGB array resized to its patch grid (no-op when it already fits)."""
    from PIL import Image
    height, width = pixels.shape[:2]
    target = grid_dims(width, height, size, patch)
    if target == (width, height):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize(target, Image.Resampling.BICUBIC))


def _open(record: RawRecord, data: bytes, max_pixels: int):
    from PIL import Image, UnidentifiedImageError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise DecodeError(record.source, record.member, f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError(record.source, record.member,
                          f"not an image Pillow can read ({', '.join(FORMATS)}); starts with {data[:12]!r}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # e.g. OSError: Truncated File Read, from the header
        raise DecodeError(record.source, record.member, f"corrupt or truncated image: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise DecodeError(record.source, record.member, f"image claims {width}x{height} = {width * height:,} pixels, "
                          f"over limits.max_pixels={max_pixels:,} (decompression bomb?)")
    return image


def decode_image(record: RawRecord, source: SourceSpec, size: int | None = None,
                 patch: int | None = None) -> np.ndarray:
    """RGB uint8 array [H, W, 3]; resized to the tokenizer's grid when size and patch are given."""
    from PIL import Image, ImageOps
    data = record.data.encode("utf-8") if isinstance(record.data, str) else record.data
    if not data:
        raise DecodeError(record.source, record.member, "empty file", EMPTY)
    image = _open(record, data, source.limits.max_pixels)
    record.meta.update(width=image.size[0], height=image.size[1], format=image.format)
    try:
        if size and patch and image.format == "JPEG":
            image.draft("RGB", grid_dims(*image.size, size, patch))
        image.load()
        # no copy where nothing changes (an upright RGB image already at its grid): each copy runs with the GIL
        # held, which bounds how many decode threads one worker can use (docs/architecture.md)
        ImageOps.exif_transpose(image, in_place=True)
        if image.mode != "RGB":
            image = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(record.source, record.member, f"corrupt or truncated image: {exc}") from exc
    if size and patch and image.size != grid_dims(*image.size, size, patch):
        image = image.resize(grid_dims(*image.size, size, patch), Image.Resampling.BICUBIC)
    return np.asarray(image)
