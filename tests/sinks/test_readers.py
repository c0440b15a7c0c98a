"""docs/formats.md's reader snippets, each run as written, in its own process, on datasets made by `tokenmill run`.

Readers written by others (pyarrow, Hugging Face datasets, webdataset, Ray Data,
Megatron-Energon, Megatron-Core) must give exactly the tokens of every sample.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.dataset.read import open_dataset
from pipeline.stages.dynamic import expand_table
from tests.tm_testing import REPO, copy_stdlib, run_cli

# snippet name -> the dataset fixture it runs on
READERS = {"pyarrow": "plain", "hf-datasets": "plain", "hf-datasets-from-file": "plain", "webdataset": "plain",
           "webdataset-dynamic": "dynamic", "ray-data": "plain", "energon": "plain", "megatron-core": "plain"}

JOB = """name: readers
source: {{uri: {corpus}, format: files, modality: code, unit_bytes: 120KiB}}
tokenizer: {{kind: hf, path: {tok}}}
{stages}sink: {{uri: {out}, formats: [{formats}]}}
report: false
"""

EPILOGUE = """
import json as _json
_result = {}
if "tokens_by_id" in globals():
    _result["tokens_by_id"] = {str(k): [int(t) for t in v] for k, v in tokens_by_id.items()}
if "sequences" in globals():
    _result["sequences"] = [[int(t) for t in s] for s in sequences]
_json.dump(_result, open(_RESULT, "w"))
"""


def snippets() -> dict[str, str]:
    """The python blocks of docs/formats.md whose first line is `# reader: <name>`."""
    text = (REPO / "docs" / "formats.md").read_text()
    found = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        match = re.match(r"# reader: (\S+)\n", block)
        if match:
            assert match.group(1) not in found, f"two snippets named {match.group(1)}"
            found[match.group(1)] = block
    return found


def make_dataset(root: Path, tok: Path, address: str, stages: str, formats: str) -> Path:
    copy_stdlib(root / "corpus", ("json", "email"))
    job = root / "job.yaml"
    job.write_text(JOB.format(corpus=root / "corpus", tok=tok, out=root / "out", stages=stages, formats=formats))
    result = run_cli("run", str(job), address=address)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "out"


@pytest.fixture(scope="module")
def plain(tmp_path_factory, bpe_tokenizer, ray_address) -> Path:
    out = make_dataset(tmp_path_factory.mktemp("plain"), bpe_tokenizer, ray_address, "", "arrow, parquet, webdataset")
    exported = run_cli("export", "megatron", str(out), f"{out}-megatron/corpus")
    assert exported.returncode == 0, exported.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory, bpe_tokenizer, ray_address) -> Path:
    stages = "stages: [{kind: dynamic, max_merges: 300, scope: batch, batch_size: 4}]\n"
    return make_dataset(tmp_path_factory.mktemp("dynamic"), bpe_tokenizer, ray_address, stages, "arrow, webdataset")


def truth(out: Path) -> list[tuple[str, list[int]]]:
    """(id, base token ids) of every sample in index order, read by tokenmill's own reader."""
    dataset = open_dataset(str(out))
    refs, missing = dataset.shard_refs(("arrow",))
    assert refs and not missing
    rows = []
    for ref in refs:
        table = expand_table(dataset.folder.read_table(ref))
        rows += zip(table.column("id").to_pylist(), table.column("tokens").to_pylist())
    return rows


def run_snippet(code: str, out: Path, workdir: Path, ray_address: str) -> dict:
    """The snippet as a script of its own (OUT given, results saved as JSON), as a user would run it."""
    result = workdir / "result.json"
    script = workdir / "snippet.py"
    script.write_text(f"OUT = {str(out)!r}\n_RESULT = {str(result)!r}\n" + code + EPILOGUE)
    env = {**os.environ, "RAY_ADDRESS": ray_address, "HF_HOME": str(workdir / "hf"), "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script)], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(result.read_text())


def test_the_docs_show_every_reader() -> None:
    assert set(snippets()) == set(READERS)


@pytest.mark.parametrize("name", sorted(READERS))
def test_snippet_reads_every_sample_exactly(name: str, request: pytest.FixtureRequest, tmp_path: Path,
                                            ray_address: str) -> None:
    out = request.getfixturevalue(READERS[name])
    got = run_snippet(snippets()[name], out, tmp_path, ray_address)
    expected = truth(out)
    assert len(expected) > 20
    if name == "megatron-core":
        assert got["sequences"] == [tokens for _, tokens in expected]
    else:
        assert got["tokens_by_id"] == dict(expected)


def test_dynamic_tars_describe_themselves(dynamic: Path) -> None:
    """Every tar opens with `__meta__` (its shard's Arrow metadata) and `__vocab__` (the dynamic
    vocabulary, byte for byte), so tokenmill's own reader expands a tar alone to the base ids."""
    import tarfile

    import pyarrow as pa
    dataset = open_dataset(str(dynamic))
    expected = dict(truth(dynamic))
    checked = 0
    for shard in dataset.index.shards:
        meta = pa.ipc.open_file(dynamic / shard.files["arrow"].path).schema.metadata
        with tarfile.open(dynamic / shard.files["webdataset"].path) as tar:
            first, second = tar.next(), tar.next()
            assert (first.name, second.name) == ("__meta__", "__vocab__")
            assert json.loads(tar.extractfile(first).read()) == {
                k.decode(): v.decode() for k, v in meta.items() if k != b"tokenmill.dynamic_vocab"}
            assert tar.extractfile(second).read() == meta[b"tokenmill.dynamic_vocab"]
        table = expand_table(dataset.folder.read_table(dataset.folder.shard_ref(shard, ("webdataset",))))
        for sample_id, tokens in zip(table.column("id").to_pylist(), table.column("tokens").to_pylist()):
            assert tokens == expected[sample_id]
            checked += 1
    assert checked == len(expected) and len(dataset.index.shards) > 1
