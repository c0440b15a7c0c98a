"""Fixtures of the stage tests: a BPE trained on real stdlib code, a small codebook."""
from __future__ import annotations

import numpy as np
import pytest

from tests.stages.helpers import STDLIB, RealBPE, train_bpe


@pytest.fixture(scope="session")
def stdlib_bpe() -> RealBPE:
    files = sorted((STDLIB / "unittest" / "test").glob("test_*.py"))[:8]
    assert len(files) == 8, "the stdlib unittest tests are the real corpus here"
    return train_bpe(files, vocab_size=1000)


@pytest.fixture(scope="session")
def random_codebook() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
