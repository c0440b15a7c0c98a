"""Codebook files: integer code vectors in safetensors plus a JSON config beside them.

`X.safetensors` holds one tensor, `codebook` [K, D] (uint8 for image patches, int16 for
log-mel dB frames); `X.json` holds how vectors are made (patch size, sample rate, ...).
Only safetensors is ever read: a file that is anything else (a pickle, a .pt) is refused
with a SpecError before any work starts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import SpecError
from pipeline.storage import local_file

FORMAT = "tokenmill.codebook"
TENSOR = "codebook"


@dataclass(frozen=True)
class Codebook:
    """Integer code vectors and the config that says how input vectors are made."""

    vectors: np.ndarray        # [K, D], uint8 or int16
    config: dict[str, Any]
    path: Path                 # the .safetensors file
    config_path: Path          # the .json beside it

    @property
    def files(self) -> list[Path]:
        return [self.path, self.config_path]


def config_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def save_codebook(path: str | Path, vectors: np.ndarray, config: dict[str, Any]) -> list[str]:
    """Write X.safetensors and X.json; returns both paths."""
    from safetensors.numpy import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({TENSOR: np.ascontiguousarray(vectors)}, str(path), metadata={"format": FORMAT})
    full = {"format": FORMAT, "version": 1, "codebook_size": int(vectors.shape[0]), "dim": int(vectors.shape[1]),
            "dtype": str(vectors.dtype), **config}
    config_path(path).write_text(json.dumps(full, indent=1, sort_keys=True) + "\n")
    return [str(path), str(config_path(path))]


def _read_safetensors(path: Path) -> np.ndarray:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    head = path.read_bytes()[:9]
    if len(head) < 9 or head[8:9] != b"{":
        raise SpecError(f"tokenizer.path: {path} is not a safetensors file (starts with {head[:8]!r}); codebooks "
                        "are read only as safetensors, never unpickled: make one with `tokenmill train`")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, ValueError, OSError) as exc:
        raise SpecError(f"tokenizer.path: {path} is not a readable safetensors file: {exc}") from None
    if TENSOR not in tensors or tensors[TENSOR].ndim != 2:
        raise SpecError(f"tokenizer.path: {path} has no 2-D tensor named {TENSOR!r} (has: {', '.join(tensors)})")
    return tensors[TENSOR]


def load_codebook(uri: str, modality: str) -> Codebook:
    """Read a codebook and its config; every problem is a SpecError naming the file."""
    path = local_file(uri)
    if not path.is_file():
        raise SpecError(f"tokenizer.path: codebook not found: {uri}")
    vectors = _read_safetensors(path)
    cfg_uri = uri[: -len(path.suffix)] + ".json" if path.suffix else uri + ".json"
    cfg_path = local_file(cfg_uri)
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise SpecError(f"tokenizer.path: the codebook config {cfg_path} beside {path} is missing or "
                        f"not JSON: {exc}") from None
    if config.get("format") != FORMAT or config.get("modality") != modality:
        raise SpecError(f"tokenizer.path: {cfg_path} is not a {modality} codebook config "
                        f"(format {config.get('format')!r}, modality {config.get('modality')!r})")
    if list(vectors.shape) != [config["codebook_size"], config["dim"]]:
        raise SpecError(f"tokenizer.path: {path} holds {list(vectors.shape)} vectors, its config says "
                        f"[{config['codebook_size']}, {config['dim']}]")
    return Codebook(vectors, config, path, cfg_path)
