"""Real media for tests, written on the fly: photos from skimage.data, speech from espeak-ng,
videos encoded with PyAV from panning over a photo, ELF executables from /usr/bin, and the
bad inputs the pipeline must quarantine (each built the way it happens in real corpora).
"""
from __future__ import annotations

import atexit
import functools
import io
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field")
SENTENCES = ("The quick brown fox jumps over the lazy dog.",
             "Tokenizing speech turns a waveform into a short sequence of codes.",
             "A pipeline reads, decodes, tokenizes and writes shards.")


def photo(name: str) -> np.ndarray:
    """An RGB uint8 photo shipped with scikit-image (grey ones are stacked to RGB); a copy of the one loaded."""
    return _photo(name).copy()


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    import skimage.data
    pixels = getattr(skimage.data, name)()
    return np.stack([pixels] * 3, axis=-1) if pixels.ndim == 2 else pixels[..., :3]


def _written_once(write):
    """`write(folder, ...)` run once per process (per arguments) into a folder of its own; each call copies what it
    wrote into its folder (the same bytes: the encoders and the seeded training are deterministic) and returns
    write's answer with the paths moved there. The photos took ~2 s to write, the gallery ~3 s, an image
    codebook ~2.7 s, and dozens of tests ask for them."""
    @functools.lru_cache(maxsize=None)
    def made(*args: Any, **kwargs: Any) -> tuple[Path, Any]:
        cache = Path(tempfile.mkdtemp(prefix=f"tm-{write.__name__}-"))
        atexit.register(_remove_in, os.getpid(), cache)
        answer = write(cache, *args, **kwargs)
        return cache, tuple(answer) if isinstance(answer, list) else answer

    @functools.wraps(write)
    def copied(folder: Path, *args: Any, **kwargs: Any) -> Any:
        cache, answer = made(*args, **kwargs)
        shutil.copytree(cache, folder, dirs_exist_ok=True)
        if isinstance(answer, tuple):
            return [folder / path.relative_to(cache) for path in answer]
        return folder / answer.relative_to(cache)
    return copied


def _remove_in(pid: int, folder: Path) -> None:
    """Remove folder at exit, in the process that made it only (not in a forked child that exits normally)."""
    if os.getpid() == pid:
        shutil.rmtree(folder, ignore_errors=True)


@_written_once
def write_photos(folder: Path) -> list[Path]:
    """Photos as JPEG, PNG, WebP, GIF, plus a JPEG whose EXIF says 'rotate 90'."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    formats = ("jpg", "png", "webp", "gif", "jpg", "png")
    paths = []
    for name, ext in zip(PHOTOS, formats):
        path = folder / f"{name}.{ext}"
        Image.fromarray(photo(name)).save(path, quality=90) if ext in ("jpg", "webp") else \
            Image.fromarray(photo(name)).save(path)
        paths.append(path)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    tall = Image.fromarray(photo("coffee"))
    tall.save(folder / "rotated.jpg", exif=exif, quality=90)
    paths.append(folder / "rotated.jpg")
    return paths


def speech(text: str, rate: int = 22050) -> tuple[np.ndarray, int]:
    """Speech samples from espeak-ng when installed, else a voiced, formant-shaped synthetic utterance."""
    if shutil.which("espeak-ng"):
        import soundfile as sf
        out = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True).stdout
        samples, sr = sf.read(io.BytesIO(out), dtype="float32")
        return samples, sr
    t = np.arange(int(rate * 0.06 * len(text))) / rate
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voiced = np.sign(np.sin(2 * np.pi * np.cumsum(pitch) / rate))
    envelope = np.abs(np.sin(2 * np.pi * 2.5 * t))
    return (0.3 * voiced * envelope * np.sin(2 * np.pi * 700 * t)).astype(np.float32), rate


@_written_once
def write_audio(folder: Path) -> list[Path]:
    """Speech as WAV, FLAC, OGG (libsndfile) and MP3 (PyAV/LAME)."""
    import soundfile as sf
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (text, ext) in enumerate(zip(SENTENCES, ("wav", "flac", "ogg"))):
        samples, sr = speech(text)
        path = folder / f"speech{i}.{ext}"
        sf.write(path, samples, sr, format={"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}[ext])
        paths.append(path)
    samples, sr = speech(SENTENCES[0])
    paths.append(write_mp3(folder / "speech3.mp3", samples, sr))
    return paths


def write_mp3(path: Path, samples: np.ndarray, rate: int) -> Path:
    return encode_audio(path, "libmp3lame", samples, rate)


def encode_audio(path: Path, codec: str, samples: np.ndarray, rate: int, container: str | None = None) -> Path:
    """Mono float samples encoded by PyAV with `codec` into `path` (container from the suffix unless given)."""
    import av
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.astype(np.float32)[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def pan_frames(n: int = 48, width: int = 192, height: int = 144) -> np.ndarray:
    """Frames of a camera panning across the astronaut photo."""
    image = photo("astronaut")
    xs = np.linspace(0, image.shape[1] - width, n).astype(int)
    return np.stack([image[100:100 + height, x:x + width] for x in xs])


def write_video(path: Path, codec: str, frames: np.ndarray, fps: int = 24) -> Path:
    import av
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@_written_once
def write_videos(folder: Path) -> list[Path]:
    """2 s clips: MP4/H.264, WebM/VP9, MKV/H.264."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = pan_frames()
    return [write_video(folder / "pan.mp4", "libx264", frames), write_video(folder / "pan.webm", "libvpx-vp9", frames),
            write_video(folder / "pan.mkv", "libx264", frames[::-1])]


def elf_binaries(n: int = 8, max_size: int = 400_000) -> list[Path]:
    """Real ELF executables from /usr/bin (smallest first is not wanted: a spread of sizes)."""
    found = []
    for entry in sorted(os.scandir("/usr/bin"), key=lambda e: e.name):
        if entry.is_file(follow_symlinks=False) and 10_000 < entry.stat().st_size < max_size:
            with open(entry.path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(Path(entry.path))
    return found[:: max(1, len(found) // n)][:n]


# ---- bad inputs -----------------------------------------------------------------------

def png_bomb() -> bytes:
    """A valid PNG header claiming 50,000 x 50,000 RGB pixels with a tiny compressed body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) \
        + chunk(b"IEND", b"")


def truncated(path: Path, fraction: float = 0.5) -> bytes:
    data = path.read_bytes()
    return data[: int(len(data) * fraction)]


def audio_only_mp4(path: Path) -> Path:
    """An MP4 with an AAC audio stream and no video stream."""
    samples, sr = speech(SENTENCES[1])
    return encode_audio(path, "aac", samples, sr, container="mp4")


def write_bad_images(folder: Path, good_jpeg: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    bad = {"truncated": folder / "cut.jpg", "bomb": folder / "bomb.png", "text": folder / "notes.jpg"}
    bad["truncated"].write_bytes(truncated(good_jpeg))
    bad["bomb"].write_bytes(png_bomb())
    bad["text"].write_text("this is a plain text file that only pretends to be a JPEG\n" * 20)
    return bad


def write_bad_audio(folder: Path, good_wav: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    bad = {"cut": folder / "cut.wav", "text": folder / "notes.flac"}
    bad["cut"].write_bytes(truncated(good_wav))
    bad["text"].write_text("not audio at all, just words\n" * 20)
    return bad


def write_bad_videos(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    bad = {"empty": folder / "empty.mp4", "no_video": audio_only_mp4(folder / "voice.mp4"),
           "text": folder / "notes.webm"}
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("a text file with a video extension\n" * 20)
    return bad


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar with members in the given order (names are written exactly as given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_image_shard(path: Path, photos: list[Path], evil: bool = True) -> Path:
    """A WebDataset tar: key.jpg + key.json per photo, plus samples with `../../x` and absolute names."""
    members = []
    for i, p in enumerate(photos):
        members += [(f"sample{i:03d}.{p.suffix[1:]}", p.read_bytes()),
                    (f"sample{i:03d}.json", b'{"caption": "%s"}' % p.stem.encode())]
    if evil:
        members += [("../../x.jpg", photos[0].read_bytes()), ("/tmp/abs.jpg", photos[0].read_bytes())]
    return write_tar(path, members)


def not_safetensors(path: Path) -> Path:
    """A pickle-protocol file named like a codebook (never unpickled by the code under test)."""
    import pickle
    path.write_bytes(pickle.dumps({"codebook": [[0, 1, 2]]}))
    return path


@_written_once
def image_codebook(folder: Path, k: int = 64, image_size: int = 128) -> Path:
    """An image-vq codebook trained by tokenmill on the photos (written to folder/image.safetensors)."""
    from pipeline.spec import SourceSpec
    from pipeline.train.codebook import train_image_codebook
    photos = write_photos(folder / "photos")
    out = folder / "image.safetensors"
    train_image_codebook(SourceSpec(uri=str(folder / "photos"), modality="image"), k, str(out), 1 << 30,
                         image_size=image_size)
    assert photos and out.exists()
    return out


@_written_once
def audio_codebook(folder: Path, k: int = 32) -> Path:
    """An audio-vq codebook trained by tokenmill on the speech files."""
    from pipeline.spec import SourceSpec
    from pipeline.train.codebook import train_audio_codebook
    write_audio(folder / "speech")
    out = folder / "audio.safetensors"
    train_audio_codebook(SourceSpec(uri=str(folder / "speech"), modality="audio"), k, str(out), 1 << 30)
    return out


# ---- bad inputs of issue 12: real files cut, corrupted or mislabelled -------------------

GALLERY = ("astronaut", "brick", "camera", "cat", "cell", "chelsea", "clock", "coffee", "coins", "colorwheel",
           "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text")


@_written_once
def write_gallery(folder: Path, n: int = 30) -> list[Path]:
    """n distinct real photos (the scikit-image samples, then crops of them) as JPEG, PNG and WebP."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        pixels = photo(GALLERY[i % len(GALLERY)])
        if i >= len(GALLERY):  # a second pass: the lower right part of each photo
            pixels = pixels[pixels.shape[0] // 3:, pixels.shape[1] // 3:]
        ext = ("jpg", "png", "webp")[i % 3]
        path = folder / f"g{i:02d}-{GALLERY[i % len(GALLERY)]}.{ext}"
        Image.fromarray(np.ascontiguousarray(pixels)).save(path, quality=85) if ext != "png" else \
            Image.fromarray(np.ascontiguousarray(pixels)).save(path)
        paths.append(path)
    return paths


def write_damaged_photos(folder: Path, good_jpeg: Path, good_webp: Path) -> dict[str, Path]:
    """The acceptance's four: a JPEG cut after 400 bytes (Pillow raises OSError from Image.open), a
    WebP cut in half, a text file named .jpg, a PNG whose header claims 50000x50000."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = {"cut": folder / "cut400.jpg", "webp": folder / "cut.webp", "text": folder / "readme.jpg",
           "bomb": folder / "huge.png"}
    bad["cut"].write_bytes(good_jpeg.read_bytes()[:400])
    bad["webp"].write_bytes(truncated(good_webp))
    bad["text"].write_bytes((Path(__file__).parent / "media_fixtures.py").read_bytes()[:3000])
    bad["bomb"].write_bytes(png_bomb())
    return bad


def write_nan_wav(path: Path) -> Path:
    """Real speech as a 32-bit float WAV with a stretch of NaN and one inf (a float WAV may hold them)."""
    import soundfile as sf
    samples, rate = speech(SENTENCES[2])
    samples = samples.astype(np.float32)
    samples[len(samples) // 3: len(samples) // 3 + 500] = np.nan
    samples[-10] = np.inf
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, rate, subtype="FLOAT")
    return path


def write_cut_flac(path: Path, good_flac: Path) -> Path:
    path.write_bytes(truncated(good_flac, 0.6))
    return path


def write_tars_with_non_utf8_name(folder: Path, photos: list[Path]) -> list[Path]:
    """4 WebDataset tars, 13 samples; one member's name holds the Latin-1 byte 0xE9 (not UTF-8)."""
    folder.mkdir(parents=True, exist_ok=True)
    tars = []
    for t in range(4):
        path = folder / f"shard-{t}.tar"
        with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
            for s in range(4 if t == 0 else 3):
                p = photos[(t * 4 + s) % len(photos)]
                key = "caf\udce9" if (t, s) == (2, 1) else f"s{t}{s}"  # surrogate escape: written as b"caf\xe9"
                for name, data in ((f"{key}.{p.suffix[1:]}", p.read_bytes()), (f"{key}.json", b'{"shard": %d}' % t)):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        tars.append(path)
    return tars


def jpeg_records(n: int, size: int = 256):
    """n in-memory 256 px (or `size`) JPEG records of the scikit-image photos, each rotated a little (benchmarks)."""
    from PIL import Image

    from pipeline.sources import RawRecord
    photos = [Image.fromarray(photo(p)).convert("RGB").resize((size, size)) for p in PHOTOS]
    out = []
    for i in range(n):
        buf = io.BytesIO()
        photos[i % len(photos)].rotate(i % 11).save(buf, "JPEG", quality=90)
        out.append(RawRecord(f"img{i}.jpg", f"img{i}.jpg", buf.getvalue(), buf.tell()))
    return out


def file_records(paths: list[Path]):
    """Each file as a RawRecord, read whole."""
    from pipeline.sources import RawRecord
    return [RawRecord(str(p), str(p), p.read_bytes(), p.stat().st_size) for p in paths]
