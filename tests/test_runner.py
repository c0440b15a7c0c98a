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


def test_a_worker_keeps_freed_buffers_for_the_next_unit():
    """runner.keep_freed_memory (glibc): a freed 64 MB buffer stays in the process's heap for the next one (glibc's
    default unmaps it at once). Resident memory after the free, in a fresh process, with and without the setting."""
    import subprocess
    import sys
    code = ("import os, sys, numpy as np\n"
            "from pipeline.runner import keep_freed_memory\n"
            "applied = keep_freed_memory() if sys.argv[1] == 'keep' else None\n"
            "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
            "base = rss()\n"
            "a = np.ones(64 << 20, np.uint8); del a\n"
            "print(applied, (rss() - base) >> 20)\n")
    kept_mib = {}
    for mode in ("keep", "default"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True).stdout
        applied, kept_mib[mode] = out.split()[0], int(out.split()[1])
        assert mode == "default" or applied == "True"
    assert kept_mib["keep"] >= 60 and kept_mib["default"] < 8, kept_mib
