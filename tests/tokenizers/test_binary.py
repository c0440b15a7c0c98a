"""binary-bpe (Binary BPE) trained on real ELF executables: lossless, and shorter than raw bytes."""
from __future__ import annotations

import numpy as np

from pipeline.spec import SourceSpec, TokenizerSpec
from pipeline.tokenizers import build_tokenizer
from pipeline.train.binary import train_binary_bpe
from pipeline.train.bpe import sample_corpus
from tests import media_fixtures as mf


def test_binary_bpe_round_trips_executables(tmp_path):
    elves = mf.elf_binaries(12)
    assert len(elves) >= 6
    corpus = tmp_path / "bin"
    corpus.mkdir()
    for p in elves[:8]:
        (corpus / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "binary.json"
    result = train_binary_bpe(sample_corpus(SourceSpec(uri=str(corpus), modality="binary"), 8 << 20), 1024, str(out))
    assert result["vocab_size"] == 1024 and result["documents"] == 8
    tok = build_tokenizer(TokenizerSpec(kind="binary-bpe", path=str(out)))
    held_out = [p.read_bytes() for p in elves[8:]] + [bytes(range(256)) * 3, b"\x00" * 5000]
    batch = tok.encode_batch(held_out)
    checked = 0
    for i, data in enumerate(held_out):
        ids = batch.values[batch.offsets[i]:batch.offsets[i + 1]]
        assert ids[-1] == tok.eos_id and tok.decode(ids) == data
        checked += 1
    assert checked == len(held_out)
    executables = sum(len(d) for d in held_out[:-2])
    assert int(batch.offsets[len(held_out) - 2]) < 0.7 * executables  # merges learned on other binaries help
    token_bytes = tok.token_bytes()
    ids = batch.values[: batch.offsets[1] - 1]
    assert b"".join(token_bytes[int(i)] for i in ids) == held_out[0]
    assert np.all(batch.values < tok.vocab_size)
