"""write_report / compute_stats on bad input, and the report and stats CLI hooks."""
from __future__ import annotations

import argparse
import json
import shutil

import pytest

from pipeline.cli import build_parser
from pipeline.report import cli_report, cli_stats, compute_stats, write_report
from pipeline.dataset.read import DatasetError
from tests.report.fixtures import make_dataset


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("plain"), n_code=12, n_docs=3)


def parse(command: str, argv: list[str]) -> argparse.Namespace:
    """The arguments as `tokenmill <command> ...` parses them."""
    return build_parser().parse_args([command, *argv])


def test_write_report_returns_the_file(plain):
    path = write_report(str(plain.out))
    assert path == str(plain.out / "report.html")
    assert (plain.out / "report.html").stat().st_size > 10_000
    assert not list(plain.out.glob("report.html.tmp-*")), "the temporary file was left behind"


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no such folder"),
    (lambda d: d.mkdir(), "not a tokenmill dataset (no dataset.json"),
    (lambda d: (d.mkdir(), (d / "dataset.json").write_text("{oops")), "not valid JSON"),
    (lambda d: (d.mkdir(), (d / "dataset.json").write_text('{"name": "x"}')), "not a tokenmill index"),
])
def test_not_a_dataset_is_a_clear_error(tmp_path, make, message):
    out = tmp_path / "out"
    make(out)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        compute_stats(str(out))
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        write_report(str(out))


def test_bad_group_by_names_the_choices(plain):
    with pytest.raises(ValueError, match="folder, extension, modality or meta:<key>"):
        compute_stats(str(plain.out), group_by="colour")


def test_zero_samples_says_so(tmp_path):
    ds = make_dataset(tmp_path, n_code=0, n_docs=0)
    assert ds.samples == [] and len(ds.errors) == 2 and ds.shards
    s = compute_stats(str(ds.out))
    assert s["totals"]["n_samples"] == s["totals"]["n_tokens"] == 0
    assert s["groups"] == [] and s["lengths"]["histogram"] == [] and s["vocab"]["top"] == []
    assert s["errors"]["n_errors"] == 2
    page = open(write_report(str(ds.out))).read()
    assert "This dataset has no samples" in page


def test_missing_shard_is_named(plain, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(plain.out, out)
    index = json.loads((out / "dataset.json").read_text())
    gone = index["shards"][1]
    (out / gone["files"]["arrow"]["path"]).unlink()
    s = compute_stats(str(out))
    assert s["missing_shards"] == [{"name": gone["name"], "paths": [gone["files"]["arrow"]["path"]]}]
    for key in ("n_samples", "n_tokens", "n_bytes"):
        assert s["totals"][key] == index["totals"][key] - gone[key]
    assert s["totals"]["n_shards"] == index["totals"]["n_shards"] - 1
    page = open(write_report(str(out))).read()
    assert "missing from disk" in page and gone["name"] in page


def test_cli_stats_json_matches_compute_stats(plain, capsys):
    assert cli_stats(parse("stats", [str(plain.out), "--json", "--group-by", "extension"])) == 0
    printed = json.loads(capsys.readouterr().out)
    direct = compute_stats(str(plain.out), group_by="extension")
    for key in ("totals", "groups", "modalities", "lengths", "vocab", "errors", "throughput"):
        assert printed[key] == json.loads(json.dumps(direct[key])), key
    assert {g["group"] for g in printed["groups"]} == {".py", ".txt"}


def test_cli_stats_text(plain, capsys):
    assert cli_stats(parse("stats", [str(plain.out)])) == 0
    out = capsys.readouterr().out
    total = json.loads((plain.out / "dataset.json").read_text())["totals"]["n_tokens"]
    assert f"{total:,} tokens" in out and "code" in out and "docs" in out


def test_cli_report_prints_the_path(plain, capsys):
    assert cli_report(parse("report", [str(plain.out)])) == 0
    assert capsys.readouterr().out.strip() == str(plain.out / "report.html")


def test_cli_on_a_non_dataset_fails_with_a_message(tmp_path, capsys):
    assert cli_report(parse("report", [str(tmp_path)])) == 2
    assert cli_stats(parse("stats", [str(tmp_path), "--json"])) == 2
    err = capsys.readouterr().err
    assert err.count("not a tokenmill dataset") == 2


def test_dataset_on_s3(plain, s3_server):
    import s3fs

    from pipeline.lineage import find_sample
    options = {"endpoint_url": s3_server, "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("report-ds")
    fs.put(str(plain.out), "report-ds/out", recursive=True)
    local = compute_stats(str(plain.out))
    remote = compute_stats("s3://report-ds/out", storage_options=options)
    for key in ("totals", "groups", "lengths", "vocab", "errors", "throughput"):
        assert remote[key] == local[key], key
    assert write_report("s3://report-ds/out", storage_options=options) == "s3://report-ds/out/report.html"
    assert b"tokenmill report" in fs.cat("report-ds/out/report.html")
    sample = plain.samples[-1]
    assert find_sample("s3://report-ds/out", sample["id"], storage_options=options)["shard"] == sample["shard"]
