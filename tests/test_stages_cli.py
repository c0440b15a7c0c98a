"""Issue 5's acceptance through the real CLI on real Ray: spans (identifier) + dynamic (512, shard)
on real Python files; every document expands back to its base tokens and decodes to the file."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.stages.dynamic import DynamicVocab
from pipeline.tokenizers.text import HFTokenizer
from tests.tm_testing import copy_stdlib, run_cli

JOB = """name: stages-accept
source: {{uri: {corpus}, format: files, modality: code, unit_bytes: 300KiB}}
tokenizer: {{kind: hf, path: {tok}}}
stages:
  - {{kind: spans, unit: identifier}}
  - {{kind: dynamic, max_merges: 512, scope: shard}}
sink: {{uri: {out}, formats: [arrow, webdataset]}}
report: false
"""


def test_spans_and_dynamic_through_the_cli(tmp_path, bpe_tokenizer, ray_address):
    copy_stdlib(tmp_path / "corpus", ("unittest", "json"))
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(corpus=tmp_path / "corpus", tok=bpe_tokenizer, out=tmp_path / "out"))
    result = run_cli("run", str(job), address=ray_address)
    assert result.returncode == 0, result.stderr[-3000:]
    index = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert index["token_dtype"] == "uint16" and index["stages"][1]["kind"] == "dynamic"
    hf = HFTokenizer(str(bpe_tokenizer))
    before = after = checked = assert_spans = 0
    for shard in index["shards"]:
        table = pa.ipc.open_file(tmp_path / "out" / shard["files"]["arrow"]["path"]).read_all()
        vocab = DynamicVocab.from_schema(table.schema)
        assert vocab is not None
        for row, (sample_id, tokens, spans) in enumerate(zip(table.column("id").to_pylist(),
                                                             table.column("tokens").to_pylist(),
                                                             table.column("spans").to_pylist())):
            base = vocab.expand(np.array(tokens, dtype=np.uint32), row)
            assert hf.decode(base) == (tmp_path / "corpus" / sample_id).read_text()
            before, after, checked = before + len(base), after + len(tokens), checked + 1
            text_tokens = [hf.core.decode([int(t)]) for t in base]
            for span in spans:  # each span covers exactly one identifier's tokens
                piece = "".join(text_tokens[span["start"]:span["end"]])
                core = re.sub(r"^\W+|\W+$", "", piece)  # edge tokens may carry a space or '(' too
                assert core.isidentifier(), piece
                assert_spans += piece.startswith("assert")
    assert checked > 20
    assert after < 0.9 * before, (before, after)
    assert assert_spans > 10
    ledger = [json.loads(p.read_text()) for p in (tmp_path / "out" / "_ledger").glob("*.json")]
    assert all(e["stage_stats"]["dynamic"] for e in ledger)
    for e in ledger:  # each stage's time is in the ledger, and within the unit's time
        seconds = [stats["seconds"] for stats in e["stage_stats"].values()]
        assert len(seconds) == 2 and 0 < sum(seconds) < e["run"]["seconds"]
