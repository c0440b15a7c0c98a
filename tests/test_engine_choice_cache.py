"""`engine: auto` probes once per output folder, tokenizer and engine versions; later runs reuse the verdict."""
from __future__ import annotations

import json
import shutil

from pipeline.dataset import layout
from pipeline.job import engine_versions
from tests.tm_testing import STDLIB, copy_stdlib, run_cli


def test_probe_verdict_is_kept_and_reused(tmp_path, bpe_tokenizer, ray_address):
    copy_stdlib(tmp_path / "corpus", ("json",))
    job = tmp_path / "job.yaml"
    job.write_text(f"name: cache\nsource: {{uri: {tmp_path / 'corpus'}, modality: code}}\n"
                   f"tokenizer: {{kind: hf, path: {bpe_tokenizer}, engine: auto}}\n"
                   f"sink: {{uri: {tmp_path / 'out'}}}\nreport: false\n")
    first = run_cli("run", str(job), address=ray_address)
    assert first.returncode == 0, first.stderr[-2000:]
    kept = json.loads((tmp_path / "out" / layout.ENGINE_CHOICE).read_text())
    assert kept["versions"] == engine_versions() and kept["engine"] in ("hf", "tiktoken", "gigatoken")
    shutil.copyfile(STDLIB / "bisect.py", tmp_path / "corpus" / "bisect.py")  # new input: a unit to run
    second = run_cli("run", str(job), address=ray_address)
    assert second.returncode == 0 and f"probe verdict kept in {layout.ENGINE_CHOICE}" in second.stdout
    (tmp_path / "out" / layout.ENGINE_CHOICE).write_text("{not json")  # damaged: probed again, rewritten
    shutil.copyfile(STDLIB / "heapq.py", tmp_path / "corpus" / "heapq.py")
    third = run_cli("run", str(job), address=ray_address)
    assert third.returncode == 0 and "probe verdict kept" not in third.stdout
    rewritten = json.loads((tmp_path / "out" / layout.ENGINE_CHOICE).read_text())  # "{not json" would not parse
    # a new timed probe: the fastest exact engine may differ from the first probe's on a busy machine
    assert rewritten["versions"] == kept["versions"]
    assert rewritten["tokenizer_fingerprint"] == kept["tokenizer_fingerprint"]
    assert rewritten["engine"] in ("hf", "tiktoken", "gigatoken")


def test_the_verdict_on_a_named_engine_is_kept_apart_from_autos(tmp_path, bpe_tokenizer, ray_address):
    """A spec naming gigatoken probes it once (its exactness decides the spec hash); the next run reuses that
    verdict, and an `auto` run on the same folder does not take it for auto's choice."""
    copy_stdlib(tmp_path / "corpus", ("json",))
    job = tmp_path / "job.yaml"

    def write_job(engine: str) -> None:
        job.write_text(f"name: named\nsource: {{uri: {tmp_path / 'corpus'}, modality: code}}\n"
                       f"tokenizer: {{kind: hf, path: {bpe_tokenizer}, engine: {engine}}}\n"
                       f"sink: {{uri: {tmp_path / 'out'}}}\nreport: false\n")
    write_job("gigatoken")
    first = run_cli("run", str(job), address=ray_address)
    assert first.returncode == 0, first.stderr[-2000:]
    kept = json.loads((tmp_path / "out" / layout.ENGINE_CHOICE).read_text())
    assert kept["asked"] == "gigatoken" and kept["report"]["probe"]["gigatoken"]["exact"] is True
    shutil.copyfile(STDLIB / "bisect.py", tmp_path / "corpus" / "bisect.py")
    second = run_cli("run", str(job), address=ray_address)
    assert second.returncode == 0 and f"probe verdict kept in {layout.ENGINE_CHOICE}" in second.stdout
    assert " 0 redone," in second.stdout  # the same spec hash: the committed units stand
    write_job("auto")
    shutil.copyfile(STDLIB / "heapq.py", tmp_path / "corpus" / "heapq.py")
    third = run_cli("run", str(job), address=ray_address)
    assert third.returncode == 0 and "probe verdict kept" not in third.stdout
    assert json.loads((tmp_path / "out" / layout.ENGINE_CHOICE).read_text())["asked"] is None


def test_a_first_run_is_prepared_on_a_thread_while_ray_starts_and_raises_its_error(ray_address):
    import threading

    import pytest

    from pipeline.errors import SpecError
    from pipeline.job import RunOptions, _while_ray_starts
    seen = []

    def probe(x):
        seen.append(threading.current_thread().name)
        return x * 2
    assert _while_ray_starts(True, RunOptions(address=ray_address), probe, 21) == 42
    assert _while_ray_starts(False, RunOptions(address=ray_address), probe, 1) == 2
    assert seen[0].startswith("job-prepare") and seen[1] == threading.current_thread().name

    def bad_probe():
        raise SpecError("tokenizer.engine: gigatoken cannot load it")
    with pytest.raises(SpecError, match="cannot load"):
        _while_ray_starts(True, RunOptions(address=ray_address), bad_probe)
