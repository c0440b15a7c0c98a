"""A damaged and decorated output folder, then `tokenmill run` and `status` through the real CLI on real Ray.

Crafted ledger entries (`../`, an absolute path, wrong types, truncated JSON), a truncated
dataset.json, and foreign files and folders (what Megatron-Energon's `energon prepare`
leaves next to the shards): the next run completes with the same shards as a clean run,
touches nothing outside the output folder, leaves the foreign names alone and names each
problem in one line.
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from pipeline.dataset import layout
from pipeline.schemas import SCHEMA_DIR
from tests.tm_testing import copy_stdlib, run_cli

JOB = """name: untrusted
source: {{uri: {corpus}, format: files, modality: code, unit_bytes: 60KiB}}
tokenizer: {{kind: hf, path: {tok}}}
sink: {{uri: {out}, formats: [arrow, webdataset]}}
resources: {{workers: 2}}
report: false
"""


def _job(root: Path, tok: Path, out: str) -> Path:
    path = root / f"{out}.yaml"
    path.write_text(JOB.format(corpus=root / "corpus", tok=tok, out=root / out))
    return path


def _run(job: Path, address: str):
    result = run_cli("run", str(job), address=address)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out / "shards").iterdir() if layout.SHARD_FILE.fullmatch(p.name)}


def test_damaged_output_folder_heals_and_touches_nothing_else(tmp_path, bpe_tokenizer, ray_address):
    copy_stdlib(tmp_path / "corpus", ("json", "email"))
    _run(_job(tmp_path, bpe_tokenizer, "clean"), ray_address)
    job = _job(tmp_path, bpe_tokenizer, "out")
    _run(job, ray_address)
    out = tmp_path / "out"
    for path in (out / layout.LEDGER_DIR).glob("*.json"):  # real entries of a real run match the schema
        jsonschema.validate(json.loads(path.read_text()), json.loads((SCHEMA_DIR / "ledger.schema.json").read_text()))
    jsonschema.validate(json.loads((out / layout.INDEX).read_text()),
                        json.loads((SCHEMA_DIR / "dataset.schema.json").read_text()))

    precious = tmp_path / "precious.txt"
    precious.write_text("outside the output folder")
    entries = sorted((out / layout.LEDGER_DIR).glob("*.json"))
    assert len(entries) >= 4
    crafted = json.loads(entries[0].read_text())
    crafted["files"]["arrow"]["path"] = "../precious.txt"
    entries[0].write_text(json.dumps(crafted))
    stale = out / layout.LEDGER_DIR / f"u-{'f' * 20}.json"  # a unit no plan has, pointing outside
    stale.write_text(json.dumps({**crafted, "unit": f"u-{'f' * 20}", "files": {"arrow": {
        "path": "/" + str(precious).lstrip("/"), "size": 25, "sha256": "0" * 64}}}))
    entries[1].write_text("[1]")
    entries[2].write_text(entries[2].read_text()[:40])
    entries[3].write_text(json.dumps({k: v for k, v in json.loads(entries[3].read_text()).items()
                                      if k != "n_samples"}))
    (out / layout.INDEX).write_text((out / layout.INDEX).read_text()[:100])
    foreign = {"shards/NOTES.txt": "my notes", "shards/.nv-meta/dataset.yaml": "__module__: x",
               "notes.md": "# mine", "_ledger/README": "hands off"}
    foreign.update({f"shards/{name}.idx": "energon index"  # a tar's .tar.idx is tokenmill's (rebuilt when wrong)
                    for name in [n for n in sorted(_shards(out)) if not n.endswith(".tar")][:2]})
    for rel, text in foreign.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)

    status = run_cli("status", str(out))
    assert status.returncode == 1, status.stderr  # problems listed: a script can tell
    assert "shards/NOTES.txt" in status.stdout and "shards/.nv-meta" in status.stdout
    assert status.stdout.count("problem:") == 6  # the index and five entries, one line each
    assert "with problems" in status.stdout and "5 with an invalid ledger entry" in status.stdout
    assert status.stdout.count("run the job again") == 1

    healed = _run(job, ray_address)
    log = healed.stdout + healed.stderr
    assert precious.read_text() == "outside the output folder"
    for rel, text in foreign.items():
        assert (out / rel).read_text() == text, rel
    for entry in (entries[0], entries[1], entries[2], entries[3]):
        assert entry.name in log, f"{entry.name} is not named"
    assert "4 redone" in healed.stdout
    assert healed.stdout.count("  repaired: ") == 6, healed.stdout  # what was wrong, named in the summary
    assert run_cli("status", str(out)).returncode == 0  # nothing left to repair
    assert not stale.exists()
    assert _shards(out) == _shards(tmp_path / "clean")
    index, clean = (json.loads((d / layout.INDEX).read_text()) for d in (out, tmp_path / "clean"))
    assert index["shards"] == clean["shards"] and index["totals"] == clean["totals"]
    again = _run(job, ray_address)
    assert "0 redone" in again.stdout and "problem" not in again.stderr
