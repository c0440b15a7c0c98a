"""The actor pool hands work out breadth first: two units on two workers run on two workers."""
from __future__ import annotations

import shutil

from pipeline.dataset.read import DatasetFolder
from tests.tm_testing import STDLIB, run_cli


def test_two_units_on_two_workers_use_both(tmp_path, bpe_tokenizer, ray_address):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("textwrap.py", "difflib.py"):  # each larger than unit_bytes: one unit each
        shutil.copyfile(STDLIB / name, corpus / name)
    job = tmp_path / "job.yaml"
    job.write_text(f"name: breadth\nsource: {{uri: {corpus}, modality: code, unit_bytes: 1KiB}}\n"
                   f"tokenizer: {{kind: hf, path: {bpe_tokenizer}}}\nsink: {{uri: {tmp_path / 'out'}}}\n"
                   "resources: {workers: 2}\nreport: false\n")
    done = run_cli("run", str(job), address=ray_address)
    assert done.returncode == 0, done.stderr[-2000:]
    entries = DatasetFolder(str(tmp_path / "out")).ledger().sorted()
    assert len(entries) == 2
    assert len({e.run.pid for e in entries}) == 2, "both units ran on one worker"
