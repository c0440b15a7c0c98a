"""Text and code tokenizers: Hugging Face tokenizer.json and tiktoken BPE files.

One tokenizer file, several engines that produce its ids: `hf` (the reference),
`tiktoken` (the same byte-level BPE rebuilt from the tokenizer.json vocabulary, ~4x faster
on this machine) and `gigatoken`. `pipeline.tokenizers.engines` picks among them.
"""
from __future__ import annotations

import base64
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.errors import SpecError
from pipeline.storage import local_file
from pipeline.tokenizers.base import TokenBatch, Tokenizer

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
                  r"""|\s*[\r\n]|\s+(?!\S)|\s+""")
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

    def __init__(self, path: str, add_eos: bool = True, engine: str = "hf", eos_token: str | None = None) -> None:
        self.path = Path(path)
        self.core = load_hf_core(self.path)
        self.add_eos = add_eos
        self.vocab_size = self.core.get_vocab_size(with_added_tokens=True)
        self.eos_token = eos_token or next((t for t in EOS_CANDIDATES if self.core.token_to_id(t) is not None), None)
        if add_eos and self.eos_token is None:
            raise SpecError(f"tokenizer.add_eos: {path} has no EOS token ({', '.join(EOS_CANDIDATES)}); "
                            "set tokenizer.options.eos_token or add_eos: false")
        self.eos_id = self.core.token_to_id(self.eos_token) if self.eos_token else None
        self.engine = engine
        self._encode = self._engine_fn(engine)

    def files(self) -> list[Path]:
        return [self.path]

    def options(self) -> dict[str, Any]:
        return {"add_eos": self.add_eos, "eos_token": self.eos_token}

    def _engine_fn(self, engine: str) -> Callable[[list[str], int | None], TokenBatch]:
        encode, flatten = self.raw_engine(engine)
        return lambda docs, eos_id: flatten(encode(docs), eos_id)

    def raw_engine(self, engine: str) -> tuple[Callable[[list[str]], Any], Callable[[Any, int | None], TokenBatch]]:
        """(encode: documents -> the engine's own output, flatten: that output, eos_id -> TokenBatch)."""
        from pipeline.tokenizers.gigatoken_engine import engine_threads, gigatoken_engine
        threads = engine_threads()
        if engine == "hf":
            core = self.core
            return (lambda docs: [e.ids for e in core.encode_batch_fast(docs, add_special_tokens=False)],
                    TokenBatch.from_lists)
        if engine == "tiktoken":
            return _tiktoken_numpy(self.tiktoken_encoding(), threads), TokenBatch.from_arrays
        if engine == "gigatoken":
            return gigatoken_engine(self.path)
        raise SpecError(f"tokenizer.engine: unknown engine {engine!r} (hf, tiktoken, gigatoken, auto)")

    def with_engine(self, engine: str) -> "HFTokenizer":
        return HFTokenizer(str(self.path), self.add_eos, engine, self.eos_token)

    def encode_batch(self, samples: list[str]) -> TokenBatch:
        return self._encode(samples, self.eos_id if self.add_eos else None)

    def decode(self, ids: np.ndarray) -> str:
        ids = [int(i) for i in np.asarray(ids) if int(i) != self.eos_id]
        return self.core.decode(ids, skip_special_tokens=False)

    @cached_property
    def _model(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())

    def token_bytes(self) -> list[bytes]:
        """Each id's bytes (byte-level BPE); special tokens contribute no text bytes."""
        inverse = byte_level_alphabet()
        out = [b""] * self.vocab_size
        special = {t["id"] for t in self._model.get("added_tokens", []) if t.get("special")}
        for token, i in self.core.get_vocab(with_added_tokens=False).items():
            if i not in special and all(c in inverse for c in token):
                out[i] = bytes(inverse[c] for c in token)
            elif i not in special:
                out[i] = token.encode("utf-8")
        return out

    def split_pattern(self) -> str | None:
        """The regex the pre-tokenizer splits with, when it is a byte-level BPE tiktoken can run."""
        model = self._model
        if model.get("model", {}).get("type") != "BPE" or model.get("normalizer"):
            return None
        pre = model.get("pre_tokenizer") or {}
        parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
        if len(parts) == 1 and parts[0].get("type") == "ByteLevel" and parts[0].get("use_regex", True) \
                and not parts[0].get("add_prefix_space", False):
            return GPT2_PATTERN
        if len(parts) == 2 and parts[0].get("type") == "Split" and parts[1].get("type") == "ByteLevel" \
                and not parts[1].get("use_regex", True) and parts[0].get("behavior") == "Isolated":
            return parts[0]["pattern"].get("Regex")
        return None

    def tiktoken_encoding(self):
        """The same BPE as a tiktoken Encoding: ranks = ids, valid when ids follow merge order."""
        import tiktoken
        pattern = self.split_pattern()
        if pattern is None:
            raise SpecError(f"tokenizer.engine: {self.path} is not a byte-level BPE that tiktoken can run; use engine: hf")
        table = self.token_bytes()
        special = {t["content"]: t["id"] for t in self._model.get("added_tokens", [])}
        ranks = {b: i for i, b in enumerate(table) if b and i not in special.values()}
        _check_merge_order(self._model["model"].get("merges", []), self.core)
        return tiktoken.Encoding(name=f"tokenmill-{self.path.stem}", pat_str=pattern,
                                 mergeable_ranks=ranks, special_tokens=special)


def _tiktoken_numpy(enc: Any, threads: int) -> Callable[[list[str]], list[np.ndarray]]:
    """Encode each document straight to a uint32 array (no Python int per token); threads > 1 share the batch."""
    def one(doc: str) -> np.ndarray:
        return enc.encode_to_numpy(doc, allowed_special="all")  # hf also maps special-token text to its id

    if threads == 1:
        return lambda docs: [one(d) for d in docs]
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(threads, thread_name_prefix="tiktoken")
    return lambda docs: list(pool.map(one, docs))


def _check_merge_order(merges: list[Any], core: Any) -> None:
    """tiktoken merges by rank: each merged token's id must exceed its parts' and grow in order."""
    last = -1
    for merge in merges:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        ids = [core.token_to_id(left), core.token_to_id(right), core.token_to_id(left + right)]
        if None in ids or ids[2] <= max(ids[0], ids[1]) or ids[2] <= last:
            raise SpecError("tokenizer.engine: token ids do not follow merge order; tiktoken cannot "
                            "reproduce this tokenizer exactly, use engine: hf")
        last = ids[2]


class TiktokenFileTokenizer(Tokenizer):
    """A .tiktoken BPE file (base64 token, rank per line); EOS is appended after the ranks."""

    kind = "tiktoken"
    engine = "tiktoken"

    def __init__(self, path: str, add_eos: bool = True, pattern: str | None = None) -> None:
        import tiktoken
        self.path = Path(path)
        self.add_eos = add_eos
        self.pattern = pattern or CL100K_PATTERN
        try:
            ranks = _read_tiktoken_file(self.path)
        except (OSError, ValueError) as exc:
            raise SpecError(f"tokenizer.path: {path} is not a .tiktoken BPE file: {exc}") from None
        self.eos_id = max(ranks.values()) + 1
        self.vocab_size = self.eos_id + 1
        self._ranks = ranks
        self.enc = tiktoken.Encoding(name=f"tokenmill-{self.path.stem}", pat_str=self.pattern,
                                     mergeable_ranks=ranks, special_tokens={"<|endoftext|>": self.eos_id})

    def files(self) -> list[Path]:
        return [self.path]

    def options(self) -> dict[str, Any]:
        return {"add_eos": self.add_eos, "pattern": self.pattern}

    def encode_batch(self, samples: list[str]) -> TokenBatch:
        ids = self.enc.encode_ordinary_batch(samples, num_threads=1)
        return TokenBatch.from_lists(ids, self.eos_id if self.add_eos else None)

    def decode(self, ids: np.ndarray) -> str:
        return self.enc.decode([int(i) for i in np.asarray(ids) if int(i) != self.eos_id])

    def token_bytes(self) -> list[bytes]:
        out = [b""] * self.vocab_size
        for token, rank in self._ranks.items():
            out[rank] = token
        return out


def _read_tiktoken_file(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        token, rank = line.split()
        ranks[base64.b64decode(token, validate=True)] = int(rank)
    if not ranks:
        raise ValueError("no tokens")
    return ranks


def write_tiktoken_file(tokenizer: HFTokenizer, path: str) -> None:
    """Export a byte-level BPE tokenizer.json as a .tiktoken file (mergeable ranks only)."""
    table = tokenizer.token_bytes()
    lines = [f"{base64.b64encode(b).decode()} {i}" for i, b in enumerate(table) if b]
    Path(path).write_text("\n".join(lines) + "\n")


def build_hf(spec) -> HFTokenizer:
    path = str(local_file(spec.path))
    engine = "hf" if spec.engine == "auto" else spec.engine
    return HFTokenizer(path, spec.add_eos, engine, spec.options.eos_token)


def build_tiktoken(spec) -> TiktokenFileTokenizer:
    return TiktokenFileTokenizer(str(local_file(spec.path)), spec.add_eos, spec.pattern)
