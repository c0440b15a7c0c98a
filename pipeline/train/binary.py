"""Binary BPE: a byte-level BPE learned on executables (the Binary BPE idea), lossless.

Each byte is the Latin-1 character of the same value, so the 256 single-byte tokens are
the base alphabet and every byte string has an encoding; merges are learned on runs
split at NUL padding and cut to 64 bytes (pre-tokenizer), which keeps training linear in
the sample and tokens at most 64 bytes long. EOS (`<|endoftext|>`) is id 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from pipeline.train.bpe import EOS_TOKEN

SPLIT_PATTERN = r"\x00+|[^\x00]{1,64}"
ALPHABET = [chr(i) for i in range(256)]


def binary_pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers
    return pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")


def train_binary_bpe(docs: Iterator[str], vocab_size: int, output: str, min_frequency: int = 2) -> dict:
    """Train on Latin-1 strings of binaries (as `sample_corpus` yields them); writes tokenizer.json."""
    from tokenizers import Tokenizer, models, trainers
    if vocab_size < 258:
        raise ValueError(f"--vocab-size must be at least 258 (256 bytes + EOS + 1 merge), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = binary_pre_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS_TOKEN],
                                  initial_alphabet=ALPHABET, show_progress=False)
    stats = {"documents": 0, "bytes": 0}

    def counted() -> Iterator[str]:
        for doc in docs:
            stats["documents"] += 1
            stats["bytes"] += len(doc)
            yield doc

    tokenizer.train_from_iterator(counted(), trainer=trainer)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(output)
    return {"output": output, "vocab_size": tokenizer.get_vocab_size(), "kind": "binary-bpe", **stats,
            "skipped": getattr(docs, "skipped", 0)}
