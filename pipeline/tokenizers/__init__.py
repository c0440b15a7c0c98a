"""Tokenizer registry: `kind` in the job spec -> a builder, imported only when used."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pipeline.tokenizers.base import TokenBatch, Tokenizer

if TYPE_CHECKING:
    from pipeline.spec import JobSpec, TokenizerSpec

# kind -> "module:function"; the function takes a TokenizerSpec and returns a Tokenizer.
TOKENIZERS: dict[str, str] = {
    "hf": "pipeline.tokenizers.text:build_hf",
    "tiktoken": "pipeline.tokenizers.text:build_tiktoken",
    "bytes": "pipeline.tokenizers.binary:build_bytes",
    "image-vq": "pipeline.tokenizers.image:build_image_vq",
    "audio-mulaw": "pipeline.tokenizers.audio:build_mulaw",
    "audio-vq": "pipeline.tokenizers.audio:build_audio_vq",
    "video": "pipeline.tokenizers.video:build_video",
    "torchscript": "pipeline.tokenizers.torchscript:build_torchscript",
    "binary-bpe": "pipeline.tokenizers.binary_bpe:build_binary_bpe",
}
NEEDS_PATH = {"hf", "tiktoken", "image-vq", "audio-vq", "video", "torchscript", "binary-bpe"}
# kind -> modalities it accepts
KIND_MODALITIES: dict[str, tuple[str, ...]] = {
    "hf": ("text", "code", "binary"),
    "tiktoken": ("text", "code"),
    "bytes": ("text", "code", "binary"),
    "image-vq": ("image",),
    "audio-mulaw": ("audio",),
    "audio-vq": ("audio",),
    "video": ("video",),
    "torchscript": ("image", "audio", "video"),
    "binary-bpe": ("binary",),
}

__all__ = ["TOKENIZERS", "TokenBatch", "Tokenizer", "build_tokenizer", "check_tokenizer_spec"]


def _builder(kind: str) -> Callable[["TokenizerSpec"], Tokenizer]:
    module, func = TOKENIZERS[kind].split(":")
    return getattr(importlib.import_module(module), func)


def check_tokenizer_spec(spec: "JobSpec") -> None:
    """Spec-time checks: a known kind, a path where one is needed, a fitting modality."""
    from pipeline.errors import SpecError
    tok = spec.tokenizer
    if tok.kind not in TOKENIZERS:
        raise SpecError(f"tokenizer.kind: unknown kind {tok.kind!r}; choose one of: {', '.join(sorted(TOKENIZERS))}")
    if tok.kind in NEEDS_PATH and not tok.path:
        raise SpecError(f"tokenizer.path: kind {tok.kind!r} needs a path to its file "
                        "(make one with `tokenmill train`)")
    allowed = KIND_MODALITIES.get(tok.kind)
    if allowed and spec.source.modality not in allowed:
        raise SpecError(f"tokenizer.kind: {tok.kind!r} does not tokenize modality "
                        f"{spec.source.modality!r}; it takes: {', '.join(allowed)}")
    if tok.path and "://" not in tok.path and not Path(tok.path).expanduser().exists():
        raise SpecError(f"tokenizer.path: file not found: {tok.path}")


def build_tokenizer(spec: "TokenizerSpec", engine: str | None = None) -> Tokenizer:
    """The tokenizer for a spec; `engine` overrides spec.engine (used after auto-selection)."""
    if engine is not None:
        spec = spec.model_copy(update={"engine": engine})
    return _builder(spec.kind)(spec)
