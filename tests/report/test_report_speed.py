"""Run speed: each figure says what it covers, and the latest run's figures are the CLI's."""
from __future__ import annotations

import json
import shutil

import pytest

from pipeline.dataset.records import LedgerEntry, RunState
from pipeline.rates import busy_span
from pipeline.report import compute_stats, write_report
from pipeline.report.fmt import mb_s, seconds
from tests.report.fixtures import make_dataset
from tests.report.page import parse, too_precise


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("speed"), n_code=12, n_docs=3)


def copy_with_state(plain, tmp_path, shift: dict[int, float] | None = None, **state) -> tuple:
    """A copy of the dataset with _run.json written as `tokenmill run` writes it; entries i shifted by shift[i] s."""
    out = tmp_path / "out"
    shutil.copytree(plain.out, out)
    paths = sorted((out / "_ledger").glob("*.json"))
    entries = []
    for i, path in enumerate(paths):
        e = json.loads(path.read_text())
        e["run"]["started"] += (shift or {}).get(i, 0.0)
        e["run"]["finished"] += (shift or {}).get(i, 0.0)
        path.write_text(json.dumps(e))
        entries.append(LedgerEntry.model_validate(e))
    first, last = min(e.run.started for e in entries), max(e.run.finished for e in entries)
    fields = {"state": "finished", "name": "fixture", "units_total": len(entries), "units_todo": len(entries),
              "started": first - 4.0, "finished": last + 1.5, **state}
    (out / "_run.json").write_bytes(RunState(**fields).to_bytes())
    return out, entries, RunState(**fields)


def test_the_run_and_its_units_are_the_clis_two_figures(plain, tmp_path):
    out, entries, state = copy_with_state(plain, tmp_path)
    n_bytes = sum(e.n_bytes for e in entries)
    whole, span = state.finished - state.started, busy_span(entries)
    page = parse(write_report(str(out)))
    text = page.section("Run speed")
    assert f"took {seconds(whole)} from spec to index written" in text
    assert 'the CLI\'s "over the run\'s ... s"' in text and '"total ... for the whole command" adds' in text
    assert f"Over the run it read {mb_s(n_bytes / whole)} MB/s of input" in text
    assert f"ran, {seconds(span)} from the first start to the last commit" in text
    assert f'{mb_s(n_bytes / span)} MB/s, the CLI\'s "while units ran"' in text
    assert "planning, Ray start-up" in text
    assert f"Before it, the latest tokenmill run took {seconds(whole)}; the report adds" in text
    th = compute_stats(str(out))["throughput"]
    assert th["run_state"]["seconds"] == pytest.approx(whole) and th["run_state"]["n_bytes"] == n_bytes
    assert th["latest"]["seconds"] == pytest.approx(span) and th["latest"]["n_units"] == len(entries)
    assert too_precise(" ".join(page.prose)) == []


def test_a_run_with_nothing_to_do_says_so(plain, tmp_path):
    later = max(json.loads(p.read_text())["run"]["finished"] for p in (plain.out / "_ledger").glob("*.json")) + 60
    out, entries, _ = copy_with_state(plain, tmp_path, started=later, finished=later + 0.8, units_todo=0)
    page = parse(write_report(str(out)))
    text = page.section("Run speed")
    assert f"took {seconds(0.8)} from spec to index written" in text
    assert f"It had nothing to do: all {len(entries)} units were already committed" in text
    assert "MB/s of input" not in text  # no rate over a run that read nothing
    runs = page.table("run started")[1:]
    assert [r[1] for r in runs] == [str(len(entries))]  # the ledger's run that did commit them


def test_an_earlier_run_minutes_before_is_not_mixed_into_the_latest(plain, tmp_path):
    """Runs closer than the idle gap are told apart by _run.json's start, as the CLI counts them."""
    n = len(list((plain.out / "_ledger").glob("*.json")))
    early = {i: -100.0 for i in range(n // 2)}
    out, entries, state = copy_with_state(plain, tmp_path, shift=early)
    state = RunState(**{**state.model_dump(), "started": min(e.run.started for e in entries[n // 2:]) - 2.0,
                        "units_todo": n - n // 2})
    (out / "_run.json").write_bytes(state.to_bytes())
    ran = entries[n // 2:]
    th = compute_stats(str(out))["throughput"]
    assert [r["n_units"] for r in th["runs"]] == [n // 2, n - n // 2]
    assert th["latest"]["n_bytes"] == sum(e.n_bytes for e in ran)
    assert th["latest"]["seconds"] == pytest.approx(busy_span(ran))  # the CLI's "while units ran" span
    alone = tmp_path / "no-state"
    shutil.copytree(out, alone)
    (alone / "_run.json").unlink()
    assert [r["n_units"] for r in compute_stats(str(alone))["throughput"]["runs"]] == [n]  # within the gap: one


def test_without_run_state_the_figures_say_they_are_units_only(plain):
    page = parse(write_report(str(plain.out)))
    text = page.section("Run speed")
    assert "No _run.json: the figures below are the ledger's, of units only" in text
    latest = compute_stats(str(plain.out))["throughput"]["latest"]
    assert f"Before it, the latest run's units ran for {seconds(latest['seconds'])}; the report adds" in text
    assert "of the latest run's time" not in text


def test_a_run_that_has_not_finished_is_named_as_such(plain, tmp_path):
    out, entries, _ = copy_with_state(plain, tmp_path, state="running", finished=None)
    page = parse(write_report(str(out)))
    text = page.section("Run speed")
    assert "has not finished: it is still running, or it was stopped" in text
    assert "the latest run's units ran for" in text  # the footer falls back to the units' span
    assert compute_stats(str(out))["throughput"]["latest"]["n_units"] == len(entries)


def test_a_failed_run_says_it_failed(plain, tmp_path):
    out, _, state = copy_with_state(plain, tmp_path, state="failed", error="unit u-1 failed")
    text = parse(write_report(str(out))).section("Run speed")
    assert f"took {seconds(state.finished - state.started)} from spec to its end (failed; the units it " \
           "committed stay)" in text
