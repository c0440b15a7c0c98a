"""Production-style tokenizer.json files, written once per session from the real rank files (~8 s each)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.tokenizers.production import write_llama3_style, write_qwen2_style


@pytest.fixture(scope="session")
def llama3_json(tmp_path_factory) -> Path:
    return write_llama3_style(tmp_path_factory.mktemp("llama3") / "tokenizer.json")


@pytest.fixture(scope="session")
def qwen2_json(tmp_path_factory) -> Path:
    return write_qwen2_style(tmp_path_factory.mktemp("qwen2") / "tokenizer.json")
