"""Megatron-Energon's metadata, written by tokenmill, so a dataset needs no `energon prepare`.

energon's loader (`get_train_dataset(OUT, ...)`, sample type `CrudeWebdataset`) reads
`OUT/.nv-meta/.info.json` (samples per tar), `split.yaml` (the tars of each split part),
`dataset.yaml` (the sample type) and, beside each tar, `shards/<shard>.tar.idx`: little-endian
uint64 byte offsets of every sample's first member, then the end of the last member, as
`energon prepare` writes it, byte for byte. The `.tar.idx` is written with its tar (a file
derived from it, deleted with it, rebuilt from it when missing); `.nv-meta/` is rewritten after
dataset.json at the end of every run and lists exactly the index's tars that hold samples, in
index order, all in `train`. energon's `index.sqlite` is not written: only keyed access
(auxiliary datasets, joins) needs it, and `energon prepare OUT --tar-index-only` adds it to
these tars as they are. Cost: 8 bytes per sample beside each tar, one small file per run.
"""
from __future__ import annotations

import json
import logging
import re
import struct
import tarfile
from typing import IO

import yaml

from pipeline.dataset import layout
from pipeline.dataset.records import DatasetIndex
from pipeline.storage import Storage

log = logging.getLogger(__name__)

INFO, SPLIT, DATASET = (layout.energon_file(n) for n in layout.ENERGON_FILES)
DATASET_YAML = b"__module__: megatron.energon\n__class__: CrudeWebdataset\n"
# megatron/energon/flavors/webdataset/config.py: members energon skips, and how it splits key and part
_SKIP = re.compile(r"__[^/]*__($|/)")
_KEY_PART = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def tar_index(starts: list[int]) -> bytes:
    """The `.tar.idx` bytes: each sample's first byte offset, then the end of the last member."""
    return struct.pack(f"<{len(starts)}Q", *starts)


def tar_offsets(fileobj: IO[bytes]) -> list[int]:
    """The `.tar.idx` offsets of any tar, by energon prepare's rule (a sample starts where the key changes)."""
    starts, last = [], None
    with tarfile.open(fileobj=fileobj, mode="r:") as tar:
        for member in tar:
            if not member.isreg() or _SKIP.match(member.name):
                continue
            match = _KEY_PART.match(member.name)
            if match is None:
                continue
            if match.group(1) != last:
                starts.append(member.offset)
                last = match.group(1)
        starts.append(tar.offset)
    return starts


def metadata_files(tars: list[tuple[str, int]]) -> dict[str, bytes]:
    """.nv-meta/'s files for (tar path, sample count) pairs, in that order."""
    info = {"shard_counts": dict(tars)}
    split = {"split_parts": {"train": [path for path, _ in tars], "val": [], "test": []}, "exclude": []}
    return {INFO: json.dumps(info, indent=2).encode(),
            SPLIT: yaml.safe_dump(split, sort_keys=False).encode(),
            DATASET: DATASET_YAML}


def write_energon_meta(storage: Storage, index: DatasetIndex) -> list[str]:
    """Rewrite .nv-meta/ for the index's tars (remove tokenmill's files there when it has none);
    returns the `.tar.idx` files rebuilt because they were missing or the wrong size."""
    tars = [(s.files["webdataset"].path, s.n_samples) for s in index.shards
            if "webdataset" in s.files and s.n_samples > 0]  # energon refuses a tar without samples
    if not tars:
        for rel in (INFO, SPLIT, DATASET):
            storage.remove(rel)
        return []
    rebuilt = _repair_tar_indexes(storage, tars)
    for rel, data in metadata_files(tars).items():
        storage.write_atomic(rel, data)
    return rebuilt


def _repair_tar_indexes(storage: Storage, tars: list[tuple[str, int]]) -> list[str]:
    """Rebuild from its tar every `.tar.idx` that is not there at 8 * (samples + 1) bytes."""
    sizes = {f"{layout.SHARD_DIR}/{name}": info["size"] for name, info in storage.list_detail(layout.SHARD_DIR).items()}
    rebuilt = []
    for path, n_samples in tars:
        for rel in layout.derived_files(path):
            if sizes.get(rel) == 8 * (n_samples + 1):
                continue
            with storage.fs.open(storage.path(path), "rb") as f:
                storage.write_atomic(rel, tar_index(tar_offsets(f)))
            log.warning("rebuilt %s from its tar (it was missing or the wrong size)", rel)
            rebuilt.append(rel)
    return rebuilt
