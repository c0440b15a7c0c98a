"""Decoders by modality: a raw record's bytes -> what the tokenizer takes (with limits)."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from pipeline.sources import RawRecord
from pipeline.spec import SourceSpec

Decoder = Callable[[RawRecord, SourceSpec], Any]

# modality -> "module:function"; a decoder raises pipeline.errors.DecodeError on bad input.
DECODERS: dict[str, str] = {
    "text": "pipeline.decoders.text:decode_text",
    "code": "pipeline.decoders.text:decode_text",
    "binary": "pipeline.decoders.text:decode_binary",
    "image": "pipeline.decoders.image:decode_image",
    "audio": "pipeline.decoders.audio:decode_audio",
    "video": "pipeline.decoders.video:decode_video",
}


def decoder_for(modality: str) -> Decoder:
    module, func = DECODERS[modality].split(":")
    return getattr(importlib.import_module(module), func)
