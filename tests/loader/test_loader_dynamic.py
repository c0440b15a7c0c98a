"""expand_dynamic=True gives base ids back from shards written by the real dynamic stage."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.loader.token_dataset import TokenDataset
from tests.loader.fixtures import EOS, pack_stream, shard_table, stdlib_docs, write_dataset

dynamic = pytest.importorskip("pipeline.stages.dynamic", reason="pipeline/stages/dynamic.py not written yet")


def test_expand_dynamic_restores_base_tokens(tmp_path: Path) -> None:
    from pipeline.spec import DynamicSpec
    from pipeline.stages.base import StageContext
    docs = stdlib_docs(20, max_len=2000)
    merged = dynamic.DynamicMerge(DynamicSpec(kind="dynamic", max_merges=300, scope="batch", batch_size=7),
                                  StageContext(modality="code", base_vocab_size=257, eos_id=EOS))(shard_table(docs))
    dtype = str(merged.schema.field("tokens").type.value_type)
    rows = [np.asarray(x) for x in merged.column("tokens").to_pylist()]
    root = write_dataset(tmp_path, [rows], dtype=dtype, metadata=merged.schema.metadata, batch_rows=5)
    short = pack_stream(list(TokenDataset(str(root), 128, shuffle=False)))
    full = pack_stream(list(TokenDataset(str(root), 128, shuffle=False, expand_dynamic=True)))
    base = np.concatenate(docs).astype(np.int64)
    assert len(short) < 0.8 * len(base) and short.max() >= 257  # merges happened
    np.testing.assert_array_equal(full, base)
