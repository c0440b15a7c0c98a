"""What token ids stand for, read from the dataset's own tokenizer/ files: text and special ids.

A byte-level BPE token is mapped back to its bytes (not decoded alone, which turns half a
UTF-8 character into U+FFFD), so the report can show the byte; bytes that are not valid
UTF-8 come back as Python's surrogate escapes, which pipeline.report.fmt.visible prints as
<0xNN>. Kinds whose ids are not text (image, audio, video codes) have no token text.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pipeline.dataset.read import Dataset
from pipeline.tokenizers.text import byte_level_alphabet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vocabulary:
    """The byte string of each text id, and the special ids with their names."""

    pieces: dict[int, bytes] = field(default_factory=dict)
    special: dict[int, str] = field(default_factory=dict)

    def text(self, i: int) -> str | None:
        """The id's text, invalid UTF-8 bytes as surrogate escapes; a special id's name."""
        if i in self.special:
            return self.special[i]
        piece = self.pieces.get(i)
        return None if piece is None else piece.decode("utf-8", "surrogateescape")


def vocabulary(ds: Dataset) -> Vocabulary:
    """The dataset's vocabulary where its kind has text (hf, tiktoken, bytes); empty otherwise."""
    tok = ds.index.tokenizer
    try:
        if tok.kind == "bytes":
            return Vocabulary({i: bytes([i]) for i in range(256)}, _eos(tok.eos_id, "<eos>"))
        if tok.kind == "hf" and tok.files:
            return hf_vocabulary(json.loads(_read(ds, tok.files[0])))
        if tok.kind == "tiktoken" and tok.files:
            with ds.fs.open(ds.path(tok.files[0]), "rb") as f:  # plain or .gz, read as the tokenizer reads it
                data = f.read()
            specials = (tok.model_extra or {}).get("special_tokens") or {}
            return tiktoken_vocabulary(data, tok.eos_id, {int(i): name for name, i in specials.items()})
    except (OSError, ValueError, KeyError, TypeError) as err:  # a report without token texts beats no report
        log.warning("cannot read token texts from %s: %s", tok.files[0], err)
    return Vocabulary(special=_eos(tok.eos_id, "<eos>"))


def _eos(eos_id: int | None, name: str) -> dict[int, str]:
    return {} if eos_id is None else {eos_id: name}


def _read(ds: Dataset, rel: str) -> str:
    with ds.fs.open(ds.path(rel), "r", encoding="utf-8") as f:
        return f.read()


def hf_vocabulary(model: dict[str, Any]) -> Vocabulary:
    """A tokenizer.json's ids: byte-level tokens as their bytes, others as their UTF-8 text.

    SentencePiece-style byte tokens (`<0x0A>`) become that byte and `▁` a space, so every
    kind of BPE shows whitespace the same way.
    """
    vocab: dict[str, int] = model["model"].get("vocab") or {}
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        vocab = {piece: i for i, (piece, _score) in enumerate(vocab)}
    byte_level = "ByteLevel" in json.dumps(model.get("decoder") or model.get("pre_tokenizer") or {})
    inverse = byte_level_alphabet() if byte_level else {}
    pieces = {i: _piece(token, inverse) for token, i in vocab.items()}
    added = model.get("added_tokens") or []
    special = {t["id"]: t["content"] for t in added if t.get("special")}
    pieces.update({t["id"]: t["content"].encode("utf-8") for t in added if not t.get("special")})
    return Vocabulary(pieces, special)


def _piece(token: str, inverse: dict[str, int]) -> bytes:
    if inverse and all(c in inverse for c in token):
        return bytes(inverse[c] for c in token)
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        try:
            return bytes([int(token[3:5], 16)])
        except ValueError:
            pass
    return token.replace("▁", " ").encode("utf-8")


def tiktoken_vocabulary(data: bytes | str, eos_id: int | None, special: dict[int, str] | None = None) -> Vocabulary:
    """A .tiktoken file (base64 token, rank per line; plain or gzip), read by the tokenizer's own parser;
    special tokens by id (the index's), else EOS as `<|endoftext|>`."""
    from pipeline.tokenizers.tiktoken_file import parse_ranks
    ranks = parse_ranks(data.encode() if isinstance(data, str) else data, "tokenizer file")
    return Vocabulary({rank: token for token, rank in ranks.items()}, special or _eos(eos_id, "<|endoftext|>"))
