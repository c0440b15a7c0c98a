"""Token ids back to their bytes from tokenizer files: byte-level BPE, SentencePiece bytes, tiktoken, raw bytes."""
from __future__ import annotations

import base64
import json

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from pipeline.report.fmt import visible
from pipeline.report.tokens import hf_vocabulary, tiktoken_vocabulary
from tests.tm_testing import STDLIB


def test_byte_level_bpe_tokens_keep_their_bytes():
    """Half a UTF-8 character is shown as its byte, not as U+FFFD (what decoding it alone gives)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [(STDLIB / "json" / "decoder.py").read_text(), "naïve café — “quoted” \t\x00tab\n" * 20]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    words = hf_vocabulary(json.loads(tok.to_str()))
    assert words.special == {0: "<|endoftext|>"} and words.text(0) == "<|endoftext|>"
    first_byte_of_dash = tok.token_to_id("â")  # byte-level BPE writes byte 0xE2 as 'â'
    assert words.pieces[first_byte_of_dash] == b"\xe2"
    assert tok.decode([first_byte_of_dash]) == "\ufffd"  # what the old report showed
    assert visible(words.text(first_byte_of_dash)) == "<0xE2>"
    newline, nul = tok.token_to_id("Ċ"), tok.token_to_id("Ā")
    assert visible(words.text(newline)) == "\\n" and visible(words.text(nul)) == "<0x00>"
    spaces = next(i for t, i in tok.get_vocab().items() if t.startswith("ĠĠ") and set(t) == {"Ġ"})
    assert set(visible(words.text(spaces))) == {"␣"}
    checked = sum(words.pieces[i].decode("utf-8", "surrogateescape") == words.text(i) for i in words.pieces)
    assert checked == len(words.pieces) > 300


def test_sentencepiece_byte_fallback_and_metaspace():
    model = {"model": {"type": "BPE", "vocab": {"<unk>": 0, "<0x0A>": 1, "▁the": 2, "<0x00>": 3}},
             "decoder": {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Metaspace"}]},
             "added_tokens": [{"id": 4, "content": "</s>", "special": True}]}
    words = hf_vocabulary(model)
    assert [visible(words.text(i)) for i in (1, 2, 3)] == ["\\n", "␣the", "<0x00>"]
    assert words.special == {4: "</s>"}


def test_tiktoken_file():
    lines = [f"{base64.b64encode(b).decode()} {i}" for i, b in enumerate([b" ", b"\n", b"\xe2\x80", b"def"])]
    words = tiktoken_vocabulary("\n".join(lines) + "\n", eos_id=4)
    assert [visible(words.text(i)) for i in range(4)] == ["␣", "\\n", "<0xE2><0x80>", "def"]
    assert words.special == {4: "<|endoftext|>"}


def test_the_real_gzipped_o200k_file_gives_token_texts_and_its_special_names():
    from tests.tokenizers.production import rank_file, reference_encoding
    enc = reference_encoding("o200k_base")
    words = tiktoken_vocabulary(rank_file("o200k_base").read_bytes(), enc.eot_token,
                                {199999: "<|endoftext|>", 200018: "<|endofprompt|>"})
    ids = enc.encode_ordinary("def tokenize(text):\n    return text")
    assert b"".join(words.pieces[i] for i in ids) == b"def tokenize(text):\n    return text"
    assert words.special == {199999: "<|endoftext|>", 200018: "<|endofprompt|>"}
