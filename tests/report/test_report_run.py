"""The report a real `tokenmill run` writes (on the session's Ray): its spec section and its speeds
against the run's own summary (--summary-json) and the folder on disk."""
from __future__ import annotations

import json
import re

import pytest

from pipeline.report.fmt import seconds, size
from tests.report.page import parse, too_precise, wrong_plurals
from tests.tm_testing import copy_stdlib, run_cli

JOB = """name: report-run
source: {{uri: {corpus}, format: files, modality: code, unit_bytes: 48KiB}}
tokenizer: {{kind: hf, path: {tok}}}
stages: [{{kind: dynamic, max_merges: 8}}]
sink: {{uri: {out}, formats: [arrow, parquet]}}
resources: {{workers: 2}}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory, ray_address):
    root = tmp_path_factory.mktemp("report-run")
    copy_stdlib(root / "corpus", ("json", "email"), limit=24)
    tok = root / "tokenizer.json"
    trained = run_cli("train", "--input", str(root / "corpus"), "--vocab-size", "1200", "--output", str(tok))
    assert trained.returncode == 0, trained.stderr[-2000:]
    job = root / "job.yaml"
    job.write_text(JOB.format(corpus=root / "corpus", tok=tok, out=root / "out"))
    done = run_cli("run", str(job), "--summary-json", str(root / "summary.json"), address=ray_address)
    assert done.returncode in (0, 3), done.stderr[-3000:]  # 3: a unit of empty __init__ files only
    out = root / "out"
    assert (out / "report.html").is_file(), done.stdout
    return out, json.loads((root / "summary.json").read_text()), parse(str(out / "report.html")), done.stdout


def _figure(text: str, pattern: str) -> float:
    match = re.search(pattern, text)
    assert match, pattern
    return float(match.group(1).replace(",", ""))


def test_speeds_are_the_runs_own(run):
    out, summary, page, stdout = run
    state = json.loads((out / "_run.json").read_text())
    text = page.section("Run speed")
    assert f"took {seconds(state['finished'] - state['started'])} from spec to index written" in text
    assert summary["seconds"] == pytest.approx(state["finished"] - state["started"], abs=0.006)
    totals = summary["run_totals"]
    whole = _figure(text, r"Over the run it read ([\d.,]+) MB/s of input")
    units = _figure(text, r"it read ([\d.,]+) MB/s, the CLI's \"while units ran\"")
    # the summary rounds MB/s to 3 decimals; the report keeps 3 significant digits
    assert whole == pytest.approx(totals["mb_s"], rel=0.01, abs=0.0006)
    assert units == pytest.approx(totals["steady_mb_s"], rel=0.01, abs=0.0006)
    assert units > whole  # the run's time holds Ray start-up and planning
    printed = re.search(r"speed: ([\d.,]+) MB/s while units ran .*; ([\d.,]+) MB/s over the run's ([\d.,]+) s", stdout)
    assert printed, stdout  # and the same figures as the CLI printed them
    cli_units, cli_whole, cli_seconds = (float(g.replace(",", "")) for g in printed.groups())
    assert (units, whole) == (pytest.approx(cli_units, rel=0.01, abs=0.0006), pytest.approx(cli_whole, rel=0.01, abs=0.0006))
    assert _figure(text, r"took ([\d.,]+) s from spec to index") == pytest.approx(cli_seconds, rel=0.01)
    assert f"while its {summary['units_run']} units ran" in text
    assert too_precise(" ".join(page.prose)) == [] and wrong_plurals(" ".join(page.prose)) == []


def test_spec_section_is_the_runs_index(run):
    out, summary, page, _ = run
    index = json.loads((out / "dataset.json").read_text())
    tok = index["tokenizer"]
    assert page.facts["kind"] == "hf" and page.facts["engine"] == tok["engine"] == summary["engine"]
    assert page.facts["fingerprint"] == tok["fingerprint"]
    assert page.facts["EOS id"].startswith(f"{tok['eos_id']} ")
    assert page.facts["token dtype"].startswith(index["token_dtype"])
    stages = page.table("#", "stage", "settings")[1:]
    assert [r[1] for r in stages] == ["dynamic"] and "max_merges 8" in stages[0][2]
    rows = {r[0]: r for r in page.table("format", "shard files")[1:]}
    for fmt, ext in (("arrow", ".arrow"), ("parquet", ".parquet")):
        files = list((out / "shards").glob(f"*{ext}"))
        assert rows[fmt][1:3] == [str(len(files)), size(sum(f.stat().st_size for f in files))]
