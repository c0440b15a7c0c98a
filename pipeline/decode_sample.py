"""`tokenmill inspect OUT --sample ID --out DIR`: what one sample's tokens decode to, as files a person opens.

Text and code -> .txt, binaries -> .bin, images -> .png (codebook patch means on the grid),
audio -> .wav, video -> a frame strip .png; a neural encoder, which has no decoder, -> its
ids as .ids.json. The tokenizer is rebuilt from the files the
dataset carries in OUT/tokenizer/, so this works on any copy of a dataset. Tokens a stage
pruned are drawn grey; patches the temporal stage dropped repeat their last kept value.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.dataset.read import Dataset, DatasetError, DatasetFolder, open_dataset
from pipeline.dataset.records import DatasetIndex
from pipeline.errors import SpecError
from pipeline.spec import TokenizerSpec

log = logging.getLogger(__name__)

STRIP_MAX_FRAMES = 16


def find_sample(ds: Dataset, sample_id: str) -> dict[str, Any]:
    """The shard row of a sample (its id, full or a unique end of one), found as lineage finds it."""
    from pipeline.lineage import NotFound, locate_sample
    from pipeline.stages import expand_table
    try:
        hit = locate_sample(ds, sample_id)
    except NotFound as exc:
        raise SpecError(f"--sample: {exc}") from None
    entry = next(e for e in ds.ledger if e.unit == hit["unit"])
    ref = ds.folder.shard_ref(entry, ("arrow", "parquet"))
    if ref is None:
        raise SpecError("inspect reads arrow or parquet shards; this dataset has only webdataset")
    return expand_table(ds.folder.read_table(ref)).slice(hit["row"], 1).to_pylist()[0]


def dataset_tokenizer(folder: DatasetFolder, index: DatasetIndex):
    """The dataset's tokenizer, rebuilt from OUT/tokenizer/ and the options in dataset.json."""
    from pipeline.storage import local_file
    from pipeline.tokenizers import build_tokenizer
    desc = index.tokenizer
    options = desc.options
    path = None
    if desc.files:  # validated: a file directly under tokenizer/
        path = str(local_file(folder.path(desc.files[0])) if folder.local else local_file(
            f"{folder.uri}/{desc.files[0]}"))
    text = {k: options[k] for k in ("eos_token", "bos_token", "special_tokens", "allow_special")
            if options.get(k) is not None and desc.kind in ("hf", "tiktoken")}
    spec = TokenizerSpec(kind=desc.kind, path=path, add_eos=options.get("add_eos", desc.eos_id is not None),
                         fps=options.get("fps"), sample_rate=options.get("sample_rate"), pattern=options.get("pattern"),
                         **({"options": text} if text else {}))
    return build_tokenizer(spec, check=False)  # a neural encoder's model is not needed to show its ids


def fill_grid(tokens: np.ndarray, positions: list[int] | None, shape: list[int], missing: int) -> np.ndarray:
    """Full grid ids from kept tokens and their positions: pruned -> `missing`, video -> last kept."""
    size = math.prod(shape)
    if positions is None:
        return tokens[:size]
    grid = np.full(size, -1, np.int64)
    pos = np.asarray(positions, np.int64)
    inside = pos < size
    grid[pos[inside]] = tokens[inside]
    if len(shape) == 3:  # temporal merging: an absent patch repeats its value in the previous frame
        frames = grid.reshape(shape[0], -1)
        for f in range(1, shape[0]):
            frames[f] = np.where(frames[f] < 0, frames[f - 1], frames[f])
    grid[grid < 0] = missing
    return grid


def _write_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image
    Image.fromarray(np.ascontiguousarray(pixels, np.uint8)).save(path)


def frame_strip(frames: np.ndarray, gap: int = 2) -> np.ndarray:
    """Up to STRIP_MAX_FRAMES frames side by side (evenly picked), white gaps between."""
    pick = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), STRIP_MAX_FRAMES)).astype(int))
    h, w = frames.shape[1:3]
    strip = np.full((h, len(pick) * (w + gap) - gap, 3), 255, np.uint8)
    for i, f in enumerate(pick):
        strip[:, i * (w + gap):i * (w + gap) + w] = frames[f]
    return strip


def _write(tokenizer, row: dict[str, Any], tokens: np.ndarray, base: Path) -> list[Path]:
    """Decode a row's tokens to the file(s) its modality calls for."""
    modality, shape = row["modality"], row["shape"]
    if not tokenizer.decodes:  # a neural encoder without its decoder: the ids are all there is to show
        ids = fill_grid(tokens, row.get("positions"), shape, missing=-1) if shape \
            else tokens[tokens != tokenizer.eos_id]  # fill_grid leaves out the EOS after the grid
        name = _plus(base, ".ids.json")
        name.write_text(json.dumps({"shape": shape, "ids": ids.tolist(),
                                    "note": f"the {tokenizer.kind} tokenizer has no decoder: these are its codes, "
                                            "flattened as its contract says (-1: pruned by a stage)"}) + "\n")
        return [name]
    if modality in ("image", "video"):
        grid = fill_grid(tokens, row.get("positions"), shape, missing=2**31 - 1)
        decoded = tokenizer.decode(grid, shape)
        pixels = frame_strip(decoded) if modality == "video" else decoded
        name = _plus(base, ".strip.png" if modality == "video" else ".png")
        _write_png(name, pixels)
        return [name]
    if modality == "audio":
        import soundfile as sf
        clip = tokenizer.decode(tokens, shape)
        sf.write(_plus(base, ".wav"), clip.samples, clip.sample_rate, subtype="PCM_16")
        return [_plus(base, ".wav")]
    decoded = tokenizer.decode(tokens)
    if isinstance(decoded, str):
        target = base if base.suffix else _plus(base, ".txt")  # decoder.py decodes to decoder.py
        target.write_text(decoded, encoding="utf-8")
        return [target]
    target = base if base.suffix else _plus(base, ".bin")
    target.write_bytes(bytes(decoded))
    return [target]


def _plus(base: Path, ext: str) -> Path:
    """The original name with the decoded file's extension after it (astronaut.jpg.png)."""
    return base.with_name(base.name + ext)


def inspect_sample(out_dir: str, sample_id: str, dest_dir: str) -> list[str]:
    """Write what a sample's tokens decode to into dest_dir; returns the paths written."""
    try:
        ds = open_dataset(out_dir)
    except DatasetError as exc:
        raise SpecError(str(exc)) from None
    row = find_sample(ds, sample_id)
    tokenizer = dataset_tokenizer(ds.folder, ds.index)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    original = row["id"].rsplit("/", 1)[-1]  # the input's own file name, kept so a person recognises it
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in original)[:80].lstrip(".") or "sample"
    written = _write(tokenizer, row, np.asarray(row["tokens"], np.int64), dest / stem)
    info = {k: row[k] for k in ("id", "source", "modality", "shape", "n_bytes")}
    info.update(n_tokens=len(row["tokens"]), meta=json.loads(row["meta"] or "{}"), files=[p.name for p in written])
    (dest / f"{stem}.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return [str(p) for p in written] + [str(dest / f"{stem}.json")]


def configure_inspect_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="dataset folder (sink.uri)")
    p.add_argument("--sample", required=True, help="sample id (the `id` column), or a unique end of one")
    p.add_argument("--out", dest="dest", required=True, help="folder to write the decoded files into")


def cli_inspect(args: argparse.Namespace) -> int:
    for path in inspect_sample(args.out, args.sample, args.dest):
        print(path)
    return 0
