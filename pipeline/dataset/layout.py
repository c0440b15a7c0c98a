"""Every name in a tokenmill output folder, once: folders, file patterns, temporaries, keys, versions.

Anything read back from the folder is untrusted: a path in a record is accepted only when
it is one of the names below (no `..`, no absolute path, no other folder). Cleanup deletes
only names that match these patterns, so a foreign file or folder (a NOTES.txt, the
`index.sqlite` that `energon prepare --tar-index-only` adds to `.nv-meta/`) is never touched.
tokenmill writes Megatron-Energon's metadata itself: `shards/<shard>.tar.idx` beside each tar
(a file derived from it, deleted with it) and `.nv-meta/{.info.json,split.yaml,dataset.yaml}`.
"""
from __future__ import annotations

import hashlib
import re

INDEX = "dataset.json"
LEDGER_DIR = "_ledger"
SHARD_DIR = "shards"
ERROR_DIR = "_errors"
TOKENIZER_DIR = "tokenizer"
RUN_STATE = "_run.json"
LOCK = "_lock"
REPORT = "report.html"
WRITE_TEST = ".write-test"
ENERGON_DIR = ".nv-meta"  # Megatron-Energon's metadata folder (pipeline.sinks.energon)
ENERGON_FILES = (".info.json", "split.yaml", "dataset.yaml")
ENGINE_CHOICE = "_engine.json"  # the engine probe's verdict, reused while tokenizer and engines are the same
ROOT_NAMES = (INDEX, LEDGER_DIR, SHARD_DIR, ERROR_DIR, TOKENIZER_DIR, RUN_STATE, LOCK, REPORT, WRITE_TEST, ENERGON_DIR,
              ENGINE_CHOICE)

INDEX_FORMAT = "tokenmill.dataset"
INDEX_VERSION = 1
LEDGER_VERSION = 1
SHARD_FORMAT_VERSION = 1
META_PREFIX = "tokenmill."  # shard-level Arrow schema metadata keys
META_FORMAT_VERSION = f"{META_PREFIX}format_version"
META_TOKENIZER = f"{META_PREFIX}tokenizer_fingerprint"
META_SPEC_HASH = f"{META_PREFIX}spec_hash"
META_BASE_VOCAB = f"{META_PREFIX}base_vocab_size"
META_DYNAMIC = f"{META_PREFIX}dynamic_vocab"
TAR_META_MEMBER = "__meta__"  # a tar's first member: its shard's metadata above but META_DYNAMIC, as JSON
TAR_VOCAB_MEMBER = "__vocab__"  # next, with the dynamic stage: META_DYNAMIC's value, byte for byte

FORMATS = ("arrow", "parquet", "webdataset")
SHARD_EXTENSIONS = {"arrow": ".arrow", "parquet": ".parquet", "webdataset": ".tar"}
TMP_MARK = ".tmp-"  # `<final name>.tmp-<32 hex>` while a file is written (storage.write_atomic)

UNIT_ID = re.compile(r"u-[0-9a-f]{20}")
SHARD_NAME = re.compile(r"part-[0-9a-f]{16}")
SHARD_FILE = re.compile(r"(part-[0-9a-f]{16})\.(arrow|parquet|tar)")
TAR_INDEX_FILE = re.compile(r"(part-[0-9a-f]{16})\.tar\.idx")  # derived from the tar: energon's sample offsets
TEMPORARY = re.compile(r"(.+)\.tmp-[0-9a-f]{32}")
TOKENIZER_FILE = re.compile(r"[^/\\\x00]+")  # one path component: the tokenizer file's own name


class LayoutError(ValueError):
    """A name read back from the output folder that is not one of tokenmill's own."""


def shard_name(unit_id: str, fingerprint: str) -> str:
    """The shard of a unit: a pure function of the unit id and its input fingerprint."""
    return "part-" + hashlib.sha256(f"{unit_id}\n{fingerprint}".encode()).hexdigest()[:16]


def shard_file(shard: str, fmt: str) -> str:
    return f"{SHARD_DIR}/{shard}{SHARD_EXTENSIONS[fmt]}"


def derived_files(path: str) -> tuple[str, ...]:
    """Files written with a shard file and derived from it: a tar's `.tar.idx`."""
    return (f"{path}.idx",) if path.endswith(".tar") else ()


def energon_file(name: str) -> str:
    return f"{ENERGON_DIR}/{name}"


def ledger_file(unit_id: str) -> str:
    return f"{LEDGER_DIR}/{unit_id}.json"


def errors_file(unit_id: str) -> str:
    return f"{ERROR_DIR}/{unit_id}.parquet"


def tokenizer_file(name: str) -> str:
    return f"{TOKENIZER_DIR}/{name}"


def temporary_name(rel: str, token: str) -> str:
    return f"{rel}{TMP_MARK}{token}"


def check_unit_id(value: str) -> str:
    if not isinstance(value, str) or not UNIT_ID.fullmatch(value):
        raise LayoutError(f"unit id {value!r} is not tokenmill's (u-<20 hex>)")
    return value


def check_shard_name(value: str) -> str:
    if not isinstance(value, str) or not SHARD_NAME.fullmatch(value):
        raise LayoutError(f"shard name {value!r} is not tokenmill's (part-<16 hex>)")
    return value


def check_shard_path(path: str, shard: str, fmt: str) -> str:
    """A shard file path must be exactly shards/<shard>.<ext of fmt>: nothing else is ever opened or deleted."""
    want = shard_file(shard, fmt)
    if path != want:
        raise LayoutError(f"{fmt} file path {path!r} is not {want!r} (the only name this shard's file may have)")
    return path


def check_tokenizer_path(path: str) -> str:
    folder, _, name = path.partition("/")
    if folder != TOKENIZER_DIR or not TOKENIZER_FILE.fullmatch(name) or name in (".", ".."):
        raise LayoutError(f"tokenizer file {path!r} is not a file directly under {TOKENIZER_DIR}/")
    return path


def owned_shard_file(name: str) -> bool:
    """Whether a name in shards/ is a tokenmill shard file, a tar's index, or one of their temporaries."""
    tmp = TEMPORARY.fullmatch(name)
    base = tmp.group(1) if tmp else name
    return bool(SHARD_FILE.fullmatch(base) or TAR_INDEX_FILE.fullmatch(base))


def owned_ledger_file(name: str) -> bool:
    tmp = TEMPORARY.fullmatch(name)
    base = tmp.group(1) if tmp else name
    return base.endswith(".json") and bool(UNIT_ID.fullmatch(base[:-len(".json")]))


def owned_errors_file(name: str) -> bool:
    tmp = TEMPORARY.fullmatch(name)
    base = tmp.group(1) if tmp else name
    return base.endswith(".parquet") and bool(UNIT_ID.fullmatch(base[:-len(".parquet")]))


def owned_root_name(name: str) -> bool:
    tmp = TEMPORARY.fullmatch(name)
    return (tmp.group(1) if tmp else name) in ROOT_NAMES


def owned_energon_file(name: str) -> bool:
    """Whether a name in .nv-meta/ is one tokenmill writes (energon's index.sqlite and index.uuid are not)."""
    tmp = TEMPORARY.fullmatch(name)
    return (tmp.group(1) if tmp else name) in ENERGON_FILES


OWNED_IN = {SHARD_DIR: owned_shard_file, LEDGER_DIR: owned_ledger_file, ERROR_DIR: owned_errors_file,
            ENERGON_DIR: owned_energon_file}
