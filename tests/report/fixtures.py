"""Small real tokenmill datasets for the report and lineage tests, written per docs/formats.md.

Real text (Python stdlib modules, Debian copyright files) and real executables (which fail
UTF-8 decoding and are quarantined) are copied into a corpus folder, tokenized with a
byte-level BPE trained here, cut into units, and written as shards + ledger + index with
pyarrow alone. `samples` keeps the ground truth (base tokens before any dynamic merges).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pipeline.dataset import layout
from tests.tm_testing import STDLIB, frozen_garbage

CODE_DIRS = ("json", "email", "http", "xml/dom", "urllib", "logging", "concurrent/futures", "importlib")
DOC_PACKAGES = ("adduser", "apt", "bash", "bc", "binutils", "bzip2", "coreutils", "cmake", "gzip", "tar")
BINARIES = ("/usr/bin/base32", "/usr/bin/cat")
VOCAB = 600
EOS = 0


@dataclass
class FixtureDataset:
    """A written dataset and the ground truth it was made from."""

    out: Path
    samples: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    shards: list[dict] = field(default_factory=list)


def build_corpus(root: Path, n_code: int = 24, n_docs: int = 6, code_dirs: tuple = CODE_DIRS,
                 packages: int = 0) -> Path:
    """Copy real files into root/corpus/{code,docs,bin}; returns the corpus folder.

    With `packages`, the code is the first two modules of that many stdlib packages, each in
    its own top folder (corpus/<package>/), so grouping by folder gives that many groups.
    """
    corpus = root / "corpus"
    if packages:
        for pkg in stdlib_packages(packages):
            for src in sorted((STDLIB / pkg).glob("*.py"))[:2]:
                _copy(src, corpus / src.relative_to(STDLIB))
    code = [p for d in code_dirs for p in sorted((STDLIB / d).glob("*.py"))]
    if n_code > len(code):
        code = sorted(p for p in STDLIB.rglob("*.py") if "site-packages" not in p.parts)
    for src in code[:n_code]:
        _copy(src, corpus / "code" / src.relative_to(STDLIB))
    for pkg in DOC_PACKAGES[:n_docs]:
        if Path(f"/usr/share/doc/{pkg}/copyright").is_file():
            _copy(Path(f"/usr/share/doc/{pkg}/copyright"), corpus / "docs" / f"{pkg}.txt")
    for exe in BINARIES:
        _copy(Path(exe), corpus / "bin" / Path(exe).name)
    return corpus


def stdlib_packages(n: int) -> list[str]:
    """The first n stdlib packages (by name) that hold at least two modules of their own."""
    names = [p.name for p in sorted(STDLIB.iterdir()) if p.is_dir() and p.name.isidentifier()
             and p.name not in ("site-packages", "test", "code") and len(list(p.glob("*.py"))) >= 2]
    assert len(names) >= n, f"only {len(names)} stdlib packages"
    return names[:n]


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def train_tokenizer(corpus: Path, vocab_size: int = VOCAB) -> Tokenizer:
    """A byte-level BPE trained on the corpus text; id 0 is the EOS token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = [p.read_text(errors="ignore") for p in sorted(corpus.rglob("*")) if p.is_file()]
    tok.train_from_iterator(texts, trainer)
    return tok


def make_dataset(root: Path, *, n_code: int = 24, n_docs: int = 6, files_per_unit: int = 5,
                 formats: tuple = ("arrow",), dynamic_merges: int = 0, lines: bool = False,
                 workers: int = 2, packages: int = 0) -> FixtureDataset:
    """Write OUT = root/out from real files; `lines` makes one sample per line with byte-range units.

    Units run in `workers` processes, so the ledger holds real per-worker times and pids.
    The index records the dynamic stage (when merges are asked for) as a spec would resolve it.
    """
    corpus = build_corpus(root, n_code=n_code, n_docs=n_docs, packages=packages)
    tok = train_tokenizer(corpus)
    out = root / "out"
    for sub in ("shards", "_ledger", "tokenizer"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer" / "tokenizer.json"))
    fingerprint = hashlib.sha256((out / "tokenizer" / "tokenizer.json").read_bytes()).hexdigest()
    units = _line_units(corpus) if lines else _file_units(corpus, files_per_unit)
    ds = FixtureDataset(out=out)
    jobs = [(out, fingerprint, uid, inputs, formats, dynamic_merges) for uid, inputs in units]
    with frozen_garbage(), ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        for samples, errors, shard in pool.map(_write_unit, jobs):
            ds.samples += samples
            ds.errors += errors
            ds.shards.append(shard)
    _write_index(ds, fingerprint, formats, dynamic_merges)
    return ds


def _file_units(corpus: Path, per_unit: int) -> list[tuple[str, list[dict]]]:
    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    groups = [files[i:i + per_unit] for i in range(0, len(files), per_unit)]
    return [(f"u-{i:020x}", [{"path": p, "start": 0, "end": None} for p in g]) for i, g in enumerate(groups)]


def _line_units(corpus: Path, unit_bytes: int = 4096) -> list[tuple[str, list[dict]]]:
    """Byte ranges of each docs file, cut at line ends: one unit per range."""
    units = []
    for path in sorted((corpus / "docs").glob("*.txt")):
        data, start = path.read_bytes(), 0
        while start < len(data):
            cut = data.find(b"\n", start + unit_bytes)
            end = len(data) if cut < 0 else cut + 1
            units.append((f"u-{len(units):020x}", [{"path": path, "start": start, "end": end}]))
            start = end
    return units


def _samples_of(tok: Tokenizer, inp: dict) -> tuple[list[dict], list[dict]]:
    """Samples (or one quarantine record) of one input, exactly as the pipeline defines ids."""
    path, uri = inp["path"], str(inp["path"])
    data = path.read_bytes()[inp["start"]:inp["end"]]
    modality = "code" if path.suffix == ".py" else "text"
    meta = json.dumps({"lang": "python" if modality == "code" else "en"})
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        return [], [{"uri": uri, "member": "", "reason": f"invalid utf-8 at byte {err.start}", "stage": "decode"}]
    if not data:
        return [], [{"uri": uri, "member": "", "reason": "empty input", "stage": "read"}]
    pieces = _lines(data, inp["start"]) if inp["end"] is not None else [(None, data)]
    samples = []
    for offset, chunk in pieces:
        ids = tok.encode(chunk.decode("utf-8")).ids + [EOS]
        samples.append({"id": uri if offset is None else f"{uri}@{offset}", "source": uri, "modality": modality,
                        "tokens": ids, "n_bytes": len(chunk), "meta": meta})
    return samples, []


def _lines(data: bytes, base: int) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    for line in data.splitlines(keepends=True):
        if line.strip():
            out.append((base + pos, line))
        pos += len(line)
    return out


def _write_unit(job: tuple) -> tuple[list[dict], list[dict], dict]:
    """One unit in a worker process: shard files, quarantine and ledger entry."""
    out, fingerprint, uid, inputs, formats, dynamic_merges = job
    started = time.time()
    tok = Tokenizer.from_file(str(out / "tokenizer" / "tokenizer.json"))
    samples, errors = [], []
    for inp in inputs:
        s, e = _samples_of(tok, inp)
        samples += s
        errors += e
    name = layout.shard_name(uid, _unit_fingerprint(uid))
    stored, dyn = merge_pairs([s["tokens"] for s in samples], dynamic_merges, VOCAB)
    meta = {b"tokenmill.format_version": b"1", b"tokenmill.tokenizer_fingerprint": fingerprint.encode(),
            b"tokenmill.spec_hash": b"fixture", b"tokenmill.base_vocab_size": str(VOCAB).encode()}
    if dyn is not None:
        meta[b"tokenmill.dynamic_vocab"] = json.dumps(dyn).encode()
    table = _table(samples, stored).replace_schema_metadata(meta)
    files = {fmt: _write_file(out, name, fmt, table) for fmt in formats}
    if errors:
        (out / "_errors").mkdir(exist_ok=True)
        pq.write_table(pa.Table.from_pylist(errors), out / "_errors" / f"{uid}.parquet")
    for s, toks in zip(samples, stored):
        s.update(shard=name, unit=uid, stored=toks)
    counts = {"n_samples": len(samples), "n_tokens": sum(len(t) for t in stored),
              "n_bytes": sum(s["n_bytes"] for s in samples), "n_errors": len(errors)}
    _write_ledger(out, uid, name, fingerprint, inputs, files, counts, started)
    shard = {"name": name, "unit": uid, "files": files, **counts, "first": str(inputs[0]["path"])}
    return samples, [dict(e, unit=uid) for e in errors], shard


def merge_pairs(rows: list[list[int]], n_merges: int, vocab: int) -> tuple[list[list[int]], dict | None]:
    """Dynamic tokenization (scope shard): merge the most frequent adjacent pair, n times.

    The vocabulary is returned in the layout pipeline/stages/dynamic.py writes:
    {"base_vocab_size", "scope", "groups": [{"rows": [0, n], "merges": [[a, b], ...]}]}.
    """
    if n_merges == 0:
        return rows, None
    merges = []
    for _ in range(n_merges):
        pairs = Counter(p for r in rows for p in zip(r, r[1:]))
        if not pairs:
            break
        (a, b), _count = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
        new = vocab + len(merges)
        merges.append([a, b])
        rows = [_replace(r, a, b, new) for r in rows]
    return rows, {"version": 1, "base_vocab_size": vocab, "scope": "shard",
                  "groups": [{"rows": [0, len(rows)], "merges": merges}]}


def _replace(row: list[int], a: int, b: int, new: int) -> list[int]:
    out, i = [], 0
    while i < len(row):
        if i + 1 < len(row) and row[i] == a and row[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(row[i])
            i += 1
    return out


def _table(samples: list[dict], stored: list[list[int]]) -> pa.Table:
    return pa.table({
        "id": pa.array([s["id"] for s in samples], pa.string()),
        "source": pa.array([s["source"] for s in samples], pa.string()),
        "modality": pa.array([s["modality"] for s in samples], pa.string()),
        "tokens": pa.array(stored, pa.list_(pa.uint16())),
        "shape": pa.array([[len(t)] for t in stored], pa.list_(pa.int32())),
        "n_bytes": pa.array([s["n_bytes"] for s in samples], pa.int64()),
        "meta": pa.array([s["meta"] for s in samples], pa.string()),
    })


def _write_file(out: Path, name: str, fmt: str, table: pa.Table) -> dict:
    ext = {"arrow": "arrow", "parquet": "parquet", "webdataset": "tar"}[fmt]
    path = out / "shards" / f"{name}.{ext}"
    if fmt == "arrow":
        with ipc.new_file(path, table.schema) as w:
            w.write_table(table)
    elif fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
    else:
        _write_tar(path, table)
    data = path.read_bytes()
    return {"path": f"shards/{path.name}", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _write_tar(path: Path, table: pa.Table) -> None:
    with tarfile.open(path, "w") as tar:
        for i, row in enumerate(table.to_pylist()):
            buf = io.BytesIO()
            np.save(buf, np.asarray(row.pop("tokens"), np.uint16))
            row["meta"] = json.loads(row["meta"])
            for ext, data in (("json", json.dumps(row).encode()), ("tokens.npy", buf.getvalue())):
                info = tarfile.TarInfo(f"s{i:08d}.{ext}")
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))


def _unit_fingerprint(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:20]


def _write_ledger(out, uid, name, fingerprint, inputs, files, counts, started) -> None:
    finished = time.time()
    entry = {"version": 1, "unit": uid, "fingerprint": _unit_fingerprint(uid),
             "shard": name, "spec_hash": "fixture", "tokenizer_fingerprint": fingerprint,
             "inputs": [{"uri": str(i["path"]), "size": i["path"].stat().st_size,
                         "mtime": str(i["path"].stat().st_mtime),
                         "etag": None, "start": i["start"], "end": i["end"]} for i in inputs],
             "files": files, **counts, "stage_stats": {},
             "run": {"host": socket.gethostname(), "pid": os.getpid(), "started": started, "finished": finished,
                     "seconds": finished - started, "attempt": 1}}
    (out / "_ledger" / f"{uid}.json").write_text(json.dumps(entry))


DYNAMIC_STAGE = {"kind": "dynamic", "min_count": 2, "scope": "shard", "batch_size": 256, "within_words": False}


def _write_index(ds: FixtureDataset, fingerprint: str, formats: tuple, dynamic_merges: int = 0) -> None:
    shards = sorted(ds.shards, key=lambda s: s["first"])
    keys = ("n_samples", "n_tokens", "n_bytes", "n_errors")
    stages = [{**DYNAMIC_STAGE, "max_merges": dynamic_merges}] if dynamic_merges else []
    index = {"format": "tokenmill.dataset", "version": 1, "name": "fixture", "spec_hash": "fixture",
             "modality": "code", "tokenizer": {"kind": "hf", "fingerprint": fingerprint, "vocab_size": VOCAB,
                                               "eos_id": EOS, "engine": "hf", "files": ["tokenizer/tokenizer.json"]},
             "token_dtype": "uint16", "formats": list(formats), "stages": stages,
             "shards": [{k: s[k] for k in ("name", "unit", "files", *keys)} for s in shards],
             "totals": {"n_shards": len(shards), **{k: sum(s[k] for s in shards) for k in keys}}}
    (ds.out / "dataset.json").write_text(json.dumps(index, indent=1))
