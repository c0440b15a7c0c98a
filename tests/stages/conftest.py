"""Fixtures of the stage tests: a BPE trained on real stdlib code, a small codebook."""
from __future__ import annotations

import numpy as np
import pytest

from tests.stages.helpers import STDLIB, RealBPE, train_bpe


@pytest.fixture(scope="session")
def stdlib_bpe() -> RealBPE:
    # trained on other stdlib code than the unittest tests it encodes, so their identifiers split
    files = sorted((STDLIB / "email").glob("*.py"))[:12]
    assert len(files) == 12, "the stdlib email package is the training corpus here"
    return train_bpe(files, vocab_size=1000)


@pytest.fixture(scope="session")
def random_codebook() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
