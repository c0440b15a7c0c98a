"""Fixtures of the dataset tests: a real output folder committed by real units, no Ray."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.dataset.helpers import Committed, commit_all


@pytest.fixture
def committed(tmp_path: Path) -> Committed:
    return commit_all(tmp_path)
