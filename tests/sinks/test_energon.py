"""Megatron-Energon's metadata, checked with the real megatron-energon package (CPU only).

`energon prepare` accepts tokenmill's tars as they are and writes the same `.tar.idx` and
sample counts; energon's loader reads a run's folder with no prepare step; the `.tar.idx`
files live and die with their tars, and `.nv-meta/` follows the index run after run.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.dataset import layout
from pipeline.dataset.read import DatasetFolder
from pipeline.shard import build_table
from pipeline.sinks.energon import DATASET_YAML, metadata_files, tar_offsets
from pipeline.sinks.webdataset import tar_bytes, webdataset_files
from pipeline.tokenizers.base import TokenBatch
from tests.tm_testing import copy_stdlib, run_cli

ENERGON = str(Path(sys.executable).parent / "energon")


def shard_table(n_rows: int, seed: int, *, dynamic: bool = False, keep_source: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    docs = [rng.integers(1, 500, size=int(rng.integers(0, 40))).tolist() for _ in range(n_rows)]
    batch = TokenBatch.from_lists(docs, eos_id=0)
    rows = {"id": [f"dir/f{seed}-{i}.py" for i in range(n_rows)], "source": [f"dir/f{seed}-{i}.py" for i in range(n_rows)],
            "modality": ["code"] * n_rows, "n_bytes": [len(d) for d in docs], "meta": [{}] * n_rows}
    meta = {"tokenizer_fingerprint": "abc"}
    if dynamic:
        meta["dynamic_vocab"] = json.dumps({"version": 1, "base_vocab_size": 500, "scope": "shard",
                                            "groups": [{"rows": [0, n_rows], "merges": [[1, 2]]}]})
    table = build_table(rows, batch, "uint16", meta)
    if keep_source:
        table = table.append_column("_source", pa.array([b"x = 1\n"] * n_rows, pa.binary()))
        table = table.append_column("_source_ext", pa.array(["py"] * n_rows))
    return table


def write_folder(root: Path, tables: dict[str, pa.Table]) -> dict[str, int]:
    """Shards as a unit writes them, and .nv-meta/ as a run's end writes it; returns tar -> samples."""
    counts = {}
    for shard, table in tables.items():
        for rel, data in webdataset_files(table, shard).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        counts[layout.shard_file(shard, "webdataset")] = table.num_rows
    for rel, data in metadata_files(list(counts.items())).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return counts


def digests(folder: Path, pattern: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}


TABLES = {"part-00000000000000a1": shard_table(9, 1), "part-00000000000000b2": shard_table(5, 2, dynamic=True),
          "part-00000000000000c3": shard_table(7, 3, keep_source=True)}


def test_tar_index_offsets_are_energons_rule() -> None:
    checked = 0
    for shard, table in {**TABLES, "part-00000000000000d4": shard_table(0, 4)}.items():
        data, starts = tar_bytes(table, shard)
        assert tar_offsets(io.BytesIO(data)) == starts
        assert len(starts) == table.num_rows + 1 and starts[-1] <= len(data)
        checked += table.num_rows
    assert checked == 21


def test_keys_never_repeat_across_shards() -> None:
    import tarfile
    keys: list[str] = []
    for shard, table in TABLES.items():
        with tarfile.open(fileobj=io.BytesIO(tar_bytes(table, shard)[0])) as tar:
            keys += sorted({m.name.partition(".")[0] for m in tar.getmembers() if not m.name.startswith("__")})
    assert len(keys) == len(set(keys)) == 21
    assert all("." not in k and "/" not in k for k in keys)


def test_energon_prepare_accepts_the_tars_and_writes_the_same_index(tmp_path: Path) -> None:
    counts = write_folder(tmp_path / "ds", TABLES)
    ours = digests(tmp_path / "ds" / "shards", "*.tar.idx")
    tars = digests(tmp_path / "ds" / "shards", "*.tar")
    shutil.rmtree(tmp_path / "ds" / ".nv-meta")
    done = subprocess.run([ENERGON, "prepare", str(tmp_path / "ds"), "--non-interactive", "--split-ratio", "1,0,0",
                           "--sample-type", "CrudeWebdataset"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "duplicate" not in done.stdout.lower()
    assert digests(tmp_path / "ds" / "shards", "*.tar") == tars  # not rewritten
    assert digests(tmp_path / "ds" / "shards", "*.tar.idx") == ours and len(ours) == 3
    info = json.loads((tmp_path / "ds" / ".nv-meta" / ".info.json").read_text())
    assert info["shard_counts"] == counts
    assert (tmp_path / "ds" / ".nv-meta" / "dataset.yaml").read_bytes() == DATASET_YAML


def test_energon_tar_index_only_adds_its_sqlite_and_keeps_ours(tmp_path: Path) -> None:
    write_folder(tmp_path / "ds", TABLES)
    before = {**digests(tmp_path / "ds" / "shards", "*"), **digests(tmp_path / "ds" / ".nv-meta", ".*")}
    done = subprocess.run([ENERGON, "prepare", str(tmp_path / "ds"), "--tar-index-only"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = {**digests(tmp_path / "ds" / "shards", "*"), **digests(tmp_path / "ds" / ".nv-meta", ".*")}
    assert after == before
    assert (tmp_path / "ds" / ".nv-meta" / "index.sqlite").is_file()


def energon_ids(out: Path) -> list[str]:
    """Every sample id energon's own loader gives for the folder (one pass, no shuffle)."""
    from dataclasses import dataclass

    from megatron.energon import (Cooker, DefaultTaskEncoder, Sample, WorkerConfig, basic_sample_keys, get_loader,
                                  get_train_dataset, stateless)

    @dataclass
    class IdSample(Sample):
        id: str

    @stateless
    def cook(raw: dict) -> IdSample:
        return IdSample(**basic_sample_keys(raw), id=raw["json"]["id"])

    class Encoder(DefaultTaskEncoder):
        cookers = [Cooker(cook)]

    dataset = get_train_dataset(str(out), worker_config=WorkerConfig(rank=0, world_size=1, num_workers=0),
                                batch_size=None, shuffle_buffer_size=None, max_samples_per_sequence=None,
                                task_encoder=Encoder(), repeat=False)
    return [sample.id for sample in get_loader(dataset)]


JOB = """name: energon
source: {{uri: {corpus}, format: files, modality: code, unit_bytes: 60KiB}}
tokenizer: {{kind: hf, path: {tok}}}
sink: {{uri: {out}, formats: [{formats}]}}
report: false
"""


def run_job(root: Path, tok: Path, address: str, formats: str) -> subprocess.CompletedProcess:
    job = root / "job.yaml"
    job.write_text(JOB.format(corpus=root / "corpus", tok=tok, out=root / "out", formats=formats))
    result = run_cli("run", str(job), address=address)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def index_tars(out: Path) -> dict[str, int]:
    index = json.loads((out / "dataset.json").read_text())
    return {s["files"]["webdataset"]["path"]: s["n_samples"] for s in index["shards"] if "webdataset" in s["files"]}


def test_a_run_is_an_energon_dataset_through_incremental_runs(tmp_path: Path, bpe_tokenizer: Path,
                                                              ray_address: str) -> None:
    files = copy_stdlib(tmp_path / "corpus", ("json", "email"))
    out = tmp_path / "out"
    run_job(tmp_path, bpe_tokenizer, ray_address, "arrow, webdataset")
    tars = index_tars(out)
    assert len(tars) > 3
    info = json.loads((out / ".nv-meta" / ".info.json").read_text())
    assert info["shard_counts"] == {t: n for t, n in tars.items() if n}
    root = tmp_path / "corpus"
    assert sorted(energon_ids(out)) == sorted(str(f.relative_to(root)) for f in files if f.stat().st_size)

    # energon's own sqlite (foreign), a lost .tar.idx, and a deleted input: the next run
    done = subprocess.run([ENERGON, "prepare", str(out), "--tar-index-only"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    sqlite = (out / ".nv-meta" / "index.sqlite").read_bytes()
    kept = sorted(tars)[0]
    lost = out / f"{kept}.idx"
    original = lost.read_bytes()
    lost.unlink()
    gone = next(f for f in files if str(f.relative_to(root)) not in _ids_of(out, kept))
    stale = next(t for t in tars if str(gone.relative_to(root)) in _ids_of(out, t))
    gone.unlink()
    second = run_job(tmp_path, bpe_tokenizer, ray_address, "arrow, webdataset")
    assert lost.read_bytes() == original  # rebuilt from its tar, byte for byte
    assert "rebuilt" in second.stderr
    assert not (out / f"{stale}.idx").exists() and not (out / stale).exists()
    tars = index_tars(out)
    on_disk = {f"shards/{p.name}" for p in (out / "shards").glob("*.tar.idx")}
    assert on_disk == {f"{t}.idx" for t in tars}
    info = json.loads((out / ".nv-meta" / ".info.json").read_text())
    assert info["shard_counts"] == {t: n for t, n in tars.items() if n}
    assert (out / ".nv-meta" / "index.sqlite").read_bytes() == sqlite
    assert ".nv-meta/index.sqlite" in DatasetFolder(str(out)).foreign()
    assert ".nv-meta/.info.json" not in DatasetFolder(str(out)).foreign()
    assert sorted(energon_ids(out)) == sorted(str(f.relative_to(root)) for f in files if f != gone and f.stat().st_size)

    # without the webdataset format, tokenmill's energon files go with the tars; energon's stay
    run_job(tmp_path, bpe_tokenizer, ray_address, "arrow")
    assert not list((out / "shards").glob("*.tar*"))
    assert sorted(p.name for p in (out / ".nv-meta").iterdir()) == ["index.sqlite", "index.uuid"]


def _ids_of(out: Path, tar_path: str) -> set[str]:
    import tarfile
    with tarfile.open(out / tar_path) as tar:
        return {json.load(tar.extractfile(m))["id"] for m in tar.getmembers() if m.name.endswith(".json")}


def test_tokenmill_imports_no_reader_package() -> None:
    """energon, megatron-core and datasets are readers' packages (the dev extra), never tokenmill's imports."""
    code = ("import sys, pipeline, pipeline.cli, pipeline.job, pipeline.unit, pipeline.sinks.webdataset, "
            "pipeline.sinks.energon, pipeline.sinks.megatron, pipeline.loader\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'megatron', 'datasets'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
