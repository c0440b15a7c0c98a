"""Tokenizer registry: `kind` in the job spec -> a builder, imported only when used."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

from pipeline.tokenizers.base import TokenBatch, Tokenizer

if TYPE_CHECKING:
    from pipeline.tokenizer_spec import BaseTokenizerSpec

# kind -> "module:function"; the function takes that kind's spec (pipeline.tokenizer_spec) and
# returns a Tokenizer.
TOKENIZERS: dict[str, str] = {
    "hf": "pipeline.tokenizers.text:build_hf",
    "tiktoken": "pipeline.tokenizers.text:build_tiktoken",
    "bytes": "pipeline.tokenizers.binary:build_bytes",
    "image-vq": "pipeline.tokenizers.image:build_image_vq",
    "audio-mulaw": "pipeline.tokenizers.audio:build_mulaw",
    "audio-vq": "pipeline.tokenizers.audio:build_audio_vq",
    "video": "pipeline.tokenizers.video:build_video",
    "torchscript": "pipeline.tokenizers.torchscript:build_torchscript",
    "torch-export": "pipeline.tokenizers.encoder:build_encoder",
    "torch-factory": "pipeline.tokenizers.encoder:build_encoder",
    "binary-bpe": "pipeline.tokenizers.binary_bpe:build_binary_bpe",
}
__all__ = ["TOKENIZERS", "TokenBatch", "Tokenizer", "build_tokenizer"]


def _builder(kind: str) -> Callable[["BaseTokenizerSpec"], Tokenizer]:
    module, func = TOKENIZERS[kind].split(":")
    return getattr(importlib.import_module(module), func)


def build_tokenizer(spec: "BaseTokenizerSpec", engine: str | None = None, check: bool = True) -> Tokenizer:
    """The tokenizer for a spec; `engine` overrides spec.engine (used after auto-selection). With `check`
    (Tokenizer.check) a neural encoder's model is loaded and run once; without, it is not loaded."""
    if engine is not None and "engine" in type(spec).model_fields:  # the other kinds have one engine each
        spec = spec.model_copy(update={"engine": engine})
    tokenizer = _builder(spec.kind)(spec)
    if check:
        tokenizer.check()
    return tokenizer
