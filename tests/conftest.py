"""Session fixtures: one local Ray (2 CPUs, 127.0.0.1), one moto S3 server, real corpora, a trained BPE."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tm_testing import copy_stdlib, frozen_garbage, moto_server

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_address():
    """One real local Ray for the whole session; CLI subprocesses join it with --address."""
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:"), address
    yield address
    ray.shutdown()


@pytest.fixture
def fork_safe():
    """For tests whose DataLoader workers fork this process (see frozen_garbage)."""
    with frozen_garbage():
        yield


@pytest.fixture(scope="session")
def s3_server():
    """moto in server mode on 127.0.0.1; yields the endpoint URL."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Standard AWS variables pointing at the moto server (what users set for real S3)."""
    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    return env


@pytest.fixture(scope="session")
def bpe_tokenizer(tmp_path_factory) -> Path:
    """A byte-level BPE (vocab 2,000) trained by tokenmill itself on real stdlib code."""
    from pipeline.spec import SourceSpec
    from pipeline.train.bpe import sample_corpus, train_bpe
    root = tmp_path_factory.mktemp("bpe")
    corpus = root / "corpus"
    copy_stdlib(corpus, ("json", "email", "unittest"))
    out = root / "tokenizer.json"
    train_bpe(sample_corpus(SourceSpec(uri=str(corpus), format="files", modality="code"), 4 << 20), 2000, str(out))
    return out
