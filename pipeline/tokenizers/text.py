"""Text and code tokenizers: Hugging Face tokenizer.json here, .tiktoken rank files in tiktoken_file.

One tokenizer file, several engines that produce its ids: `hf` (the reference),
`tiktoken` (the same byte-level BPE rebuilt from the tokenizer.json vocabulary, ~4x faster
on this machine; NFC is the one normalizer it runs) and `gigatoken`.
`pipeline.tokenizers.engines` picks among them. Special added tokens are matched in a
document only with `allow_special`; otherwise their text is encoded as text by every engine.
"""
from __future__ import annotations

import base64
import copy
import json
import unicodedata
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.errors import SpecError
from pipeline.storage import local_file
from pipeline.tokenizer_spec import HFOptions
from pipeline.tokenizers.base import TokenBatch, Tokenizer
from pipeline.tokenizers.gigatoken_engine import engine_threads, gigatoken_engine
from pipeline.tokenizers.specials import resolve_marks
from pipeline.tokenizers.tiktoken_file import build_tiktoken, tiktoken_numpy

__all__ = ["HFTokenizer", "build_hf", "build_tiktoken", "byte_level_alphabet", "load_hf_core", "write_tiktoken_file"]

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "[SEP]")


def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted (char -> byte)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def load_hf_core(path: Path):
    """A `tokenizers.Tokenizer` from a tokenizer.json, or a SpecError that names the file."""
    from tokenizers import Tokenizer as HFCore
    try:
        return HFCore.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception
        raise SpecError(f"tokenizer.path: {path} is not a readable tokenizer.json: {exc}") from None


class HFTokenizer(Tokenizer):
    """A Hugging Face tokenizer.json; the encode engine is chosen separately."""

    kind = "hf"

    def __init__(self, path: str, add_eos: bool = True, engine: str = "hf", options: HFOptions | None = None) -> None:
        options = options or HFOptions()
        self.path = Path(path)
        self.core = load_hf_core(self.path)
        self.add_eos = add_eos
        self.vocab_size = self.core.get_vocab_size(with_added_tokens=True)
        self.marks = resolve_marks(options, self.core.token_to_id, self.core.id_to_token, EOS_CANDIDATES, add_eos,
                                   f"the vocabulary of {self.path}")
        self.eos_token, self.eos_id = self.marks.eos or (None, None)
        self.added = {t.content: (i, t.special) for i, t in self.core.get_added_tokens_decoder().items()}
        self.special_tokens = self._special_tokens(options.special_tokens or {})
        self.allow_special = bool(options.allow_special)
        self.core.encode_special_tokens = not self.allow_special  # special-token text is text
        self.engine = engine
        self._encode = self._engine_fn(engine)

    def _special_tokens(self, declared: dict[str, int]) -> dict[str, int]:
        """The file's special added tokens, name -> id, after checking the ones the spec declares."""
        for name, token_id in declared.items():
            found = self.core.token_to_id(name)
            if found != token_id:
                raise SpecError(f"tokenizer.options.special_tokens: {name!r} is "
                                f"{'not in' if found is None else f'id {found} in'} {self.path}, not {token_id}")
        return {name: i for name, (i, special) in self.added.items() if special}

    def with_engine(self, engine: str) -> "HFTokenizer":
        """The same tokenizer encoding with another engine (the file is not loaded again)."""
        other = copy.copy(self)
        other.engine, other._encode = engine, other._engine_fn(engine)
        return other

    def files(self) -> list[Path]:
        return [self.path]

    def options(self) -> dict[str, Any]:
        # as before these options existed, unless set: fingerprints of existing datasets stay put
        return {"add_eos": self.add_eos, **self.marks.options(), **({"allow_special": True} if self.allow_special else {})}

    def _engine_fn(self, engine: str) -> Callable[[list[str], int | None], TokenBatch]:
        encode, flatten = self.raw_engine(engine)
        return lambda docs, eos_id: self.marks.add_bos(flatten(encode(docs), eos_id))

    def raw_engine(self, engine: str) -> tuple[Callable[[list[str]], Any], Callable[[Any, int | None], TokenBatch]]:
        """(encode: documents -> the engine's own output, flatten: that output, eos_id -> TokenBatch)."""
        if engine == "hf":
            core = self.core
            return (lambda docs: [e.ids for e in core.encode_batch_fast(docs, add_special_tokens=False)],
                    TokenBatch.from_lists)
        if engine == "tiktoken":
            enc, normalize = self.tiktoken_encoding()
            added = {name for name, (_, special) in self.added.items() if self.allow_special or not special}
            return tiktoken_numpy(enc, engine_threads(), added, normalize), TokenBatch.from_arrays
        if engine == "gigatoken":
            return gigatoken_engine(self.path, self.allow_special)
        raise SpecError(f"tokenizer.engine: unknown engine {engine!r} (hf, tiktoken, gigatoken, auto)")

    def encode_batch(self, samples: list[str]) -> TokenBatch:
        return self._encode(samples, self.eos_id if self.add_eos else None)

    def decode(self, ids: np.ndarray) -> str:
        return self.core.decode(self.marks.strip(ids, self.eos_id), skip_special_tokens=False)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "special_tokens": self.special_tokens, "bos_id": self.marks.bos_id,
                "options": self.options()}

    @cached_property
    def _model(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())

    def token_bytes(self) -> list[bytes]:
        """Each id's bytes (byte-level BPE); special tokens contribute no text bytes."""
        inverse = byte_level_alphabet()
        out = [b""] * self.vocab_size
        special = set(self.special_tokens.values())
        for token, i in self.core.get_vocab(with_added_tokens=False).items():
            if i not in special:
                try:
                    out[i] = bytes([inverse[c] for c in token])
                except KeyError:  # not in the byte-level alphabet: the token is its UTF-8 text
                    out[i] = token.encode("utf-8")
        return out

    def tiktoken_reason(self) -> str | None:
        """Why tiktoken cannot run this tokenizer.json exactly, or None when it can."""
        model = self._model
        if model.get("model", {}).get("type") != "BPE":
            return f"its model is {model.get('model', {}).get('type')}, not BPE"
        if model.get("normalizer") not in (None, {"type": "NFC"}):
            return f"it has the normalizer {model['normalizer'].get('type')} (tiktoken runs none, or NFC)"
        if self.split_pattern() is None:
            return (f"its pre-tokenizer is {_pre_tokenizer_types(model)} (tiktoken runs ByteLevel, or Split "
                    "(Isolated) + ByteLevel without its regex)")
        return None

    def split_pattern(self) -> str | None:
        """The regex the pre-tokenizer splits with, when it is a byte-level BPE tiktoken can run."""
        pre = self._model.get("pre_tokenizer") or {}
        parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
        if len(parts) == 1 and parts[0].get("type") == "ByteLevel" and parts[0].get("use_regex", True) \
                and not parts[0].get("add_prefix_space", False):
            return GPT2_PATTERN
        if len(parts) == 2 and parts[0].get("type") == "Split" and parts[1].get("type") == "ByteLevel" \
                and not parts[1].get("use_regex", True) and not parts[1].get("add_prefix_space", False) \
                and parts[0].get("behavior") == "Isolated" and not parts[0].get("invert", False):
            return parts[0]["pattern"].get("Regex")
        return None

    def tiktoken_encoding(self) -> tuple[Any, Callable[[str], str] | None]:
        """(the same BPE as a tiktoken Encoding, the normalizer to run first); ranks = ids, valid when ids
        follow merge order."""
        import tiktoken
        reason = self.tiktoken_reason()
        if reason is not None:
            raise SpecError(f"tokenizer.engine: tiktoken cannot run {self.path}: {reason}; use engine: hf or auto")
        added = {name: i for name, (i, _) in self.added.items()}  # tiktoken matches every added token by text
        added_ids = set(added.values())
        ranks = {b: i for i, b in enumerate(self.token_bytes()) if b and i not in added_ids}
        _check_merge_order(self._model["model"].get("merges", []), self.core.get_vocab(with_added_tokens=False))
        enc = tiktoken.Encoding(name=f"tokenmill-{self.path.stem}", pat_str=self.split_pattern(),
                                mergeable_ranks=ranks, special_tokens=added)
        nfc = self._model.get("normalizer") is not None
        return enc, (lambda doc: unicodedata.normalize("NFC", doc)) if nfc else None


def _pre_tokenizer_types(model: dict[str, Any]) -> str:
    pre = model.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return " + ".join(str(p.get("type")) for p in parts) or "none"


def _check_merge_order(merges: list[Any], vocab: dict[str, int]) -> None:
    """tiktoken merges by rank: each merged token's id must exceed its parts' and grow in order."""
    last = -1
    for merge in merges:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        ids = [vocab.get(left), vocab.get(right), vocab.get(left + right)]
        if None in ids or ids[2] <= max(ids[0], ids[1]) or ids[2] <= last:
            raise SpecError("tokenizer.engine: token ids do not follow merge order; tiktoken cannot "
                            "reproduce this tokenizer exactly, use engine: hf")
        last = ids[2]


def write_tiktoken_file(tokenizer: HFTokenizer, path: str) -> None:
    """Export a byte-level BPE tokenizer.json as a .tiktoken file (mergeable ranks only)."""
    table = tokenizer.token_bytes()
    lines = [f"{base64.b64encode(b).decode()} {i}" for i, b in enumerate(table) if b]
    Path(path).write_text("\n".join(lines) + "\n")


def build_hf(spec) -> HFTokenizer:
    path = str(local_file(spec.path))
    engine = "hf" if spec.engine == "auto" else spec.engine
    return HFTokenizer(path, spec.add_eos, engine, spec.options)
