"""Byte-level BPE training (text, code, binary) with Hugging Face `tokenizers`.

Byte-level means every byte sequence has an encoding, so decode(encode(x)) == x for any
UTF-8 text. Training is deterministic: the same sample gives a byte-identical file.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from pipeline.spec import SourceSpec
from pipeline.train import DecodedCorpus

log = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"


def sample_corpus(source: SourceSpec, max_bytes: int) -> DecodedCorpus:
    """Documents of the corpus in listing order until max_bytes (binaries as Latin-1 strings);
    `.skipped` counts the bad inputs passed over."""
    return DecodedCorpus(source, max_bytes, transform=lambda doc: doc if isinstance(doc, str) else doc.decode("latin-1"))


def train_bpe(docs: Iterator[str], vocab_size: int, output: str, min_frequency: int = 2) -> dict:
    """Train a byte-level BPE with `<|endoftext|>` as id 0 and write tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    if vocab_size < 257 + 1:
        raise ValueError(f"--vocab-size must be at least 258 (256 bytes + EOS + 1 merge), got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    n_docs = n_bytes = 0

    def counted() -> Iterator[str]:
        nonlocal n_docs, n_bytes
        for doc in docs:
            n_docs += 1
            n_bytes += len(doc)
            yield doc

    tokenizer.train_from_iterator(counted(), trainer=trainer)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(output)
    return {"output": output, "vocab_size": tokenizer.get_vocab_size(), "documents": n_docs, "chars": n_bytes,
            "skipped": getattr(docs, "skipped", 0)}
