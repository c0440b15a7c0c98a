"""Issue 6's acceptance on real pipeline output: a `tokenmill run` dataset feeds a DataLoader with
2 workers; stopped after k batches and resumed in a new process, it gives exactly the uninterrupted
batches. The Megatron export of the same dataset holds the same documents."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import torch

from tests.tm_testing import REPO, copy_stdlib, run_cli

K, NEXT = 7, 6
LOOP = """
import itertools, sys, torch
from torchdata.stateful_dataloader import StatefulDataLoader
from pipeline.loader.token_dataset import TokenDataset
out, mode, k, n, state = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
make = lambda: StatefulDataLoader(TokenDataset(out, seq_len=128, seed=3, batch_size=4), batch_size=None, num_workers=2)
loader = make()
if mode == "resume":
    loader.load_state_dict(torch.load(state, weights_only=True))
batches = list(itertools.islice(iter(loader), n))
if mode == "stop":  # the uninterrupted run above; now a second loop stopped after k batches
    stopped = make()
    list(itertools.islice(iter(stopped), k))
    torch.save(stopped.state_dict(), state)
torch.save([b["input_ids"] for b in batches], state + "." + mode)
"""


def test_training_loop_resumes_exactly_on_pipeline_output(tmp_path, bpe_tokenizer, ray_address):
    copy_stdlib(tmp_path / "corpus", ("json", "email"))
    job = tmp_path / "job.yaml"
    job.write_text(f"name: loader-accept\nsource: {{uri: {tmp_path / 'corpus'}, format: files, modality: code, "
                   f"unit_bytes: 40KiB}}\ntokenizer: {{kind: hf, path: {bpe_tokenizer}}}\n"
                   f"sink: {{uri: {tmp_path / 'out'}, formats: [arrow]}}\nreport: false\n")
    assert run_cli("run", str(job), address=ray_address).returncode == 0
    state = str(tmp_path / "loader.state")

    def loop(mode: str, k: int, n: int) -> list[torch.Tensor]:
        subprocess.run([sys.executable, "-c", LOOP, str(tmp_path / "out"), mode, str(k), str(n), state],
                       check=True, cwd=REPO, timeout=300)
        return torch.load(f"{state}.{mode}", weights_only=True)

    full = loop("stop", K, K + NEXT)  # the uninterrupted run; also saves the state after K batches
    resumed = loop("resume", 0, NEXT)  # a new process, loaded from that state
    assert len(full) == K + NEXT and len(resumed) == NEXT
    assert all(torch.equal(a, b) for a, b in zip(resumed, full[K:]))
    assert not torch.equal(full[0], full[K])


def test_megatron_export_of_pipeline_output(tmp_path, bpe_tokenizer, ray_address):
    copy_stdlib(tmp_path / "corpus", ("json",))
    job = tmp_path / "job.yaml"
    job.write_text(f"name: export\nsource: {{uri: {tmp_path / 'corpus'}, format: files, modality: code}}\n"
                   f"tokenizer: {{kind: hf, path: {bpe_tokenizer}}}\nsink: {{uri: {tmp_path / 'out'}}}\n"
                   "report: false\n")
    assert run_cli("run", str(job), address=ray_address).returncode == 0
    result = run_cli("export", "megatron", str(tmp_path / "out"), str(tmp_path / "mega" / "code"))
    assert result.returncode == 0, result.stderr[-2000:]
    idx = (tmp_path / "mega" / "code.idx").read_bytes()
    assert idx[:9] == b"MMIDIDX\x00\x00"
    version, dtype_code = np.frombuffer(idx[9:17], "<u8")[0], idx[17]
    n_seq, n_doc = np.frombuffer(idx[18:34], "<u8")
    lengths = np.frombuffer(idx, "<i4", count=n_seq, offset=34)
    pointers = np.frombuffer(idx, "<i8", count=n_seq, offset=34 + 4 * n_seq)
    assert version == 1 and dtype_code == 8  # uint16
    data = np.fromfile(tmp_path / "mega" / "code.bin", dtype=np.uint16)
    index = json.loads((tmp_path / "out" / "dataset.json").read_text())
    docs = [t for s in index["shards"] for t in
            pa.ipc.open_file(tmp_path / "out" / s["files"]["arrow"]["path"]).read_all().column("tokens").to_pylist()]
    assert n_seq == len(docs) == index["totals"]["n_samples"] and n_doc == n_seq + 1
    for doc, length, pointer in zip(docs, lengths, pointers):
        assert data[pointer // 2: pointer // 2 + length].tolist() == doc
