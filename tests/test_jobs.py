"""Every ready job spec in jobs/ is a valid JobSpec (its data paths need not exist here)."""
import shlex
from itertools import takewhile
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser
from pipeline.spec import JobSpec

ROOT = Path(__file__).resolve().parent.parent
JOBS = sorted((ROOT / "jobs").glob("*.yaml"))


def test_jobs_exist():
    assert {p.stem for p in JOBS} >= {"demo", "text", "code", "binary", "images", "audio", "video", "nightly"}


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_spec_validates(path):
    spec = JobSpec.model_validate(yaml.safe_load(path.read_text()))
    assert spec.name and spec.sink.formats


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_the_top_comment_says_how_to_make_the_tokenizer(path):
    """A `tokenmill train` line, run from the repository root, writes the file the spec names."""
    spec = JobSpec.model_validate(yaml.safe_load(path.read_text()))
    named = getattr(spec.tokenizer, "path", None)
    if named is None:
        pytest.skip(f"{spec.tokenizer.kind} needs no tokenizer file")
    top = takewhile(lambda line: line.startswith("#"), path.read_text().splitlines())
    comment = [line.lstrip("# ") for line in top]
    trains = [shlex.split(line) for line in comment if line.startswith("tokenmill train ")]
    assert trains, f"{path.name}: say in the top comment how to make {named}"
    output = build_parser().parse_args(trains[0][1:]).output  # the line is a valid command
    if "://" in named:
        assert any(line.endswith(f" {named}") and output in line for line in comment), comment
    else:
        assert (ROOT / output).resolve() == (path.parent / named).resolve()
