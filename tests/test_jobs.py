"""Every ready job spec in jobs/ is a valid JobSpec (its data paths need not exist here)."""
from pathlib import Path

import pytest
import yaml

from pipeline.spec import JobSpec

JOBS = sorted((Path(__file__).resolve().parent.parent / "jobs").glob("*.yaml"))


def test_jobs_exist():
    assert {p.stem for p in JOBS} >= {"demo", "text", "code", "binary", "images", "audio", "video", "nightly"}


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_job_spec_validates(path):
    spec = JobSpec.model_validate(yaml.safe_load(path.read_text()))
    assert spec.name and spec.sink.formats
