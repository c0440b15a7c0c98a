"""`torchscript`: a user's encoder saved with `torch.jit.save` (tensor in, integer codes out).

This is how EnCodec-, WavTokenizer- or VQGAN-style models come in without any code of
theirs being imported: TorchScript archives load with `torch.jit.load`, which restores
only TorchScript code and tensors (a plain pickle is refused). Inputs by decoded type:
  image  [1, 3, H, W] float32 in [0, 1], resized to the grid of options.image_size/patch_size
  audio  [1, 1, T] float32 in [-1, 1] at tokenizer.sample_rate
  video  [1, F, 3, H, W] float32 in [0, 1], frames at tokenizer.fps
The output's integer tensor [1, ...] gives the tokens (flattened) and `shape` (its dims
after the batch). The vocabulary size comes from the model's `vocab_size` attribute or
options.vocab_size; an id outside it quarantines the sample.
With a contract next to the archive (`enc.jit` + `enc.json`, pipeline.tokenizers.encoder)
the archive runs batched by shape under that contract instead, as `torch-export` does.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.decoders.audio import AudioClip
from pipeline.decoders.image import fit_array
from pipeline.decoders.video import VideoClip
from pipeline.errors import SpecError
from pipeline.tokenizers.base import TokenBatch, Tokenizer
from pipeline.storage import local_file
from pipeline.tokenizers.image import with_eos


def load_scripted(path: str):
    """The TorchScript module at a path/URL, on CPU; anything else is a SpecError."""
    import warnings

    import torch
    local = local_file(path)
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; it is still the safe format here
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(local), map_location="cpu").eval(), local
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"tokenizer.path: {path} is not a TorchScript archive (save the encoder with "
                        f"torch.jit.save(torch.jit.script(model), path)): {first}") from None


class TorchScriptTokenizer(Tokenizer):
    """The `torchscript` tokenizer; the model runs on the actor's device."""

    kind = "torchscript"
    engine = "torch"
    decodes = False  # no decoder ships with an encoder

    def __init__(self, path: str, options: dict[str, Any], add_eos: bool = True, sample_rate: int | None = None,
                 fps: float | None = None) -> None:
        self.model, self.path = load_scripted(path)
        size = getattr(self.model, "vocab_size", None) or options.get("vocab_size")
        if not isinstance(size, int) or size < 1:
            raise SpecError(f"tokenizer.options.vocab_size: {path} has no integer `vocab_size` attribute; "
                            "give tokenizer.options.vocab_size")
        self.codes = size
        self.add_eos = add_eos
        self.eos_id = size if add_eos else None
        self.vocab_size = size + 1 if add_eos else size
        self.image_size = int(options.get("image_size", 256))
        self.patch_size = int(options.get("patch_size", 16))
        self.sample_rate, self.fps = sample_rate, fps
        self.device_pref = options.get("device", "auto")
        self._device = None

    def files(self):
        return [self.path]

    def options(self) -> dict[str, Any]:
        return {"add_eos": self.add_eos, "image_size": self.image_size, "patch_size": self.patch_size,
                "sample_rate": self.sample_rate, "fps": self.fps}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": self.options()}

    def decode_hints(self) -> dict[str, Any]:
        return {"size": self.image_size, "patch": self.patch_size, "sample_rate": self.sample_rate, "fps": self.fps}

    def _input(self, sample: Any):
        import torch
        if isinstance(sample, AudioClip):
            return torch.from_numpy(np.array(sample.samples, np.float32))[None, None]
        if isinstance(sample, VideoClip):
            frames = np.stack([fit_array(f, self.image_size, self.patch_size) for f in sample.frames])
            return torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 255.0
        pixels = fit_array(np.asarray(sample, np.uint8), self.image_size, self.patch_size)
        return torch.from_numpy(np.array(pixels, np.uint8)).permute(2, 0, 1)[None].float() / 255.0

    def _run(self, sample: Any) -> np.ndarray:
        import torch
        if self._device is None:
            from pipeline.tokenizers.device import pick_device
            self._device = pick_device(self.device_pref)
            self.model = self.model.to(self._device)
        with torch.inference_mode():
            out = self.model(self._input(sample).to(self._device))
        if not isinstance(out, torch.Tensor) or out.is_floating_point() or out.dim() < 2 or out.shape[0] != 1:
            raise ValueError(f"the encoder must return an integer tensor [1, ...], got "
                             f"{getattr(out, 'dtype', type(out).__name__)} {list(getattr(out, 'shape', []))}")
        codes = out[0].cpu().numpy().astype(np.int64)
        if codes.size and (codes.min() < 0 or codes.max() >= self.codes):
            raise ValueError(f"the encoder returned ids outside [0, {self.codes}): {codes.min()}..{codes.max()}")
        return codes

    def encode_batch(self, samples: list[Any]) -> TokenBatch:
        """One model call per sample (inputs differ in size); the batch fails as a whole on a bad output."""
        outputs = [self._run(s) for s in samples]
        batch = with_eos([o.reshape(-1) for o in outputs], self.eos_id)
        batch.shapes = [list(o.shape) for o in outputs]
        return batch

    def decode(self, ids: np.ndarray, shape: list[int] | None = None) -> np.ndarray:
        """A TorchScript encoder has no decoder here: the ids themselves."""
        ids = np.asarray(ids, np.int64)
        return ids[ids != self.eos_id] if self.eos_id is not None else ids


def build_torchscript(spec) -> Tokenizer:
    """With a contract next to the archive (enc.jit + enc.json): the batched encoder; else one call a sample."""
    from pathlib import Path

    from pipeline.tokenizers.encoder import build_encoder, sidecar_of
    if sidecar_of(Path(local_file(spec.path))).exists():
        given = [k for k in ("vocab_size", "image_size", "patch_size") if getattr(spec.options, k) is not None]
        if given:
            raise SpecError(f"tokenizer.options.{given[0]}: the contract next to {spec.path} declares the "
                            "encoder's layout; drop the option")
        return build_encoder(spec)
    options = spec.options.model_dump(exclude_none=True)  # a key left out takes the tokenizer's default
    return TorchScriptTokenizer(spec.path, options, spec.add_eos, spec.sample_rate, spec.fps)
