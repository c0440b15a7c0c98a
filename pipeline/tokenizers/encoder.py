"""Neural encoder plug-ins: a model file (TorchScript or torch.export) or a trusted factory, plus its contract.

The contract is a JSON sidecar next to the model (`enc.pt2` -> `enc.json`; for a factory,
`tokenizer.path` is the JSON itself): what goes in (kind, size policy, value range,
mean/std, channel order, sample rate and clip length, fps and frames per clip) and what
comes out (dims, codebooks, vocab per codebook, flatten order, offsets). It travels with
the model and is fingerprinted with it. At build time (so `tokenmill validate` refuses it)
the model runs once on a blank input and its output must match the declared layout: `check()`, which
`tokenmill validate` and every worker run. A run's driver builds the tokenizer without its model (the
fingerprint needs the files, not the program) and leaves the load and the check to the workers
(docs/media.md, "Where the model is loaded").
Samples are cut into pieces of the declared shape (one image, one audio clip, one video
clip), pieces are bucketed by shape and each bucket runs in calls of up to `batch_size`.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator

from pipeline.errors import SpecError
from pipeline.tokenizer_spec import SpecModel
from pipeline.tokenizers.base import TokenBatch, Tokenizer
from pipeline.tokenizers.image import with_eos

log = logging.getLogger(__name__)

CPU_BATCH = 1  # on one CPU thread, in a worker, batch 8 cost 4-13% more per image than batch 1 (bench_cpu_batching.py)
GPU_MAX_BATCH = 256
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class InputContract(SpecModel):
    kind: Literal["image", "audio", "video"]
    size_policy: Literal["fit", "center-crop", "resize"] = Field(
        "fit", description="fit: long side = size, aspect kept; center-crop / resize: size x size")
    size: int | None = Field(None, ge=1, description="pixels (image, video)")
    multiple: int = Field(1, ge=1, description="spatial sides (audio: sample count) are multiples of this: the "
                                               "model's downsampling factor")
    value_range: tuple[float, float] | None = Field(
        None, description="pixels 0..255 (audio samples -1..1) map to this; null: [0, 1] (audio: [-1, 1])")
    mean: list[float] | None = Field(None, description="subtracted per channel after value_range")
    std: list[float] | None = None
    channel_order: Literal["rgb", "bgr"] = "rgb"
    sample_rate: int | None = Field(None, ge=1, description="audio Hz")
    clip_seconds: float | None = Field(None, gt=0, description="audio is cut into clips this long (last "
                                                               "zero-padded); null: whole")
    fps: float | None = Field(None, gt=0, description="video frames a second")
    frames_per_clip: int | None = Field(None, ge=1, description="video clip length (last padded with its last frame)")

    @model_validator(mode="after")
    def _complete(self) -> "InputContract":
        needs = {"image": ["size"], "audio": ["sample_rate"], "video": ["size", "fps", "frames_per_clip"]}
        for name in needs[self.kind]:
            if getattr(self, name) is None:
                raise ValueError(f"{name} is required for kind {self.kind}")
        if self.size and self.size % self.multiple:
            raise ValueError(f"size {self.size} is not a multiple of multiple={self.multiple}")
        for name in ("mean", "std"):
            if getattr(self, name) is not None and len(getattr(self, name)) != (1 if self.kind == "audio" else 3):
                raise ValueError(f"{name} needs one value per channel")
        return self


class OutputContract(SpecModel):
    dims: list[Literal["q", "t", "h", "w"]] = Field(description="the code tensor's dims after the batch; "
                                                                "q: codebook, t: time, h/w: grid")
    codebooks: int = Field(1, ge=1, description="size of the q dim (residual VQ levels)")
    vocab_per_codebook: int = Field(ge=1)
    flatten: Literal["codebook-major", "time-major"] = Field(
        "codebook-major", description="codebook-major: all of q0, then q1; time-major: each step's codebooks together")
    offsets: bool = Field(False, description="id = code + q * vocab_per_codebook, so codebooks do not collide")

    @model_validator(mode="after")
    def _layout(self) -> "OutputContract":
        if len(set(self.dims)) != len(self.dims):
            raise ValueError("dims repeat")
        if self.codebooks > 1 and "q" not in self.dims:
            raise ValueError(f"codebooks={self.codebooks} needs a 'q' dim")
        return self

    @property
    def vocab(self) -> int:
        return self.vocab_per_codebook * (self.codebooks if self.offsets else 1)


class Contract(SpecModel):
    input: InputContract
    output: OutputContract


def sidecar_of(path: Path) -> Path:
    return path if path.suffix == ".json" else path.with_suffix(".json")


def load_contract(path: Path, spec) -> Contract:
    """The sidecar's contract, refused with its field named; spec sample_rate/fps must agree."""
    if not path.exists():
        raise SpecError(f"tokenizer.path: no contract {path.name} next to the model (docs/media.md, "
                        "'bringing a real tokenizer')")
    try:
        contract = Contract.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise SpecError(f"tokenizer.path: {path.name} is not JSON: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        raise SpecError(f"tokenizer.path: {path.name} field {where}: {err['msg']}") from None
    for name in ("sample_rate", "fps"):
        given, declared = getattr(spec, name, None), getattr(contract.input, name)
        if given is not None and given != declared:
            raise SpecError(f"tokenizer.{name}: {given} but {path.name} declares input.{name} = {declared}")
    return contract


def load_program(kind: str, path: Path):
    """A torch callable from a TorchScript archive or a torch.export program; no user Python runs."""
    import torch
    if kind == "torchscript":
        from pipeline.tokenizers.torchscript import load_scripted
        return load_scripted(str(path))[0]
    try:
        if not _is_pt2_archive(path):  # never reach torch.export.load's fallback for older or foreign zips
            raise ValueError("no archive_format entry (a torch.save pickle, or a pre-2.8 export)")
        return torch.export.load(str(path)).module()
    except Exception as exc:  # noqa: BLE001 - torch raises assorted types for a file that is not a program
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(f"tokenizer.path: {path.name} is not a torch.export program (save it with "
                        f"torch.export.save(torch.export.export(model, args), 'enc.pt2')): {first}") from None


def _is_pt2_archive(path: Path) -> bool:
    import zipfile
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/archive_format") for name in archive.namelist())


def load_factory(name: str, trust_code: bool):
    """A trusted `module:function` (not called yet: `make_model` calls it), and the source file that defines it."""
    if not trust_code:
        raise SpecError(f"tokenizer.trust_code: factory {name} runs its own Python in every worker; set "
                        "trust_code: true to allow it")
    module_name, _, func = name.partition(":")
    if not func:
        raise SpecError(f"tokenizer.factory: {name!r} is not module:function")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, func), Path(module.__file__)
    except (ImportError, AttributeError) as exc:
        raise SpecError(f"tokenizer.factory: cannot load {name}: {exc}") from None


def make_model(factory, name: str):
    """The module a trusted factory returns, in eval mode; what it raises is a SpecError naming it."""
    try:
        return factory().eval()
    except Exception as exc:  # noqa: BLE001 - the user's own code: whatever it raises
        raise SpecError(f"tokenizer.factory: {name}() raised {type(exc).__name__}: {exc}") from None


class EncoderTokenizer(Tokenizer):
    """A neural encoder behind a contract, batched by input shape. Built without its model: `check()` loads
    it (with `load_model`), runs it once on a blank input and sizes the batch."""

    engine = "torch"
    decodes = False  # no decoder ships with an encoder
    loads_model = True

    def __init__(self, kind: str, load_model: Callable[[], Any], files: list[Path], contract: Contract, *,
                 add_eos: bool, batch_size: int | str | None, precision: str | None, device: str | None) -> None:
        self.kind, self._load_model, self._files, self.contract = kind, load_model, files, contract
        self.model = None
        self.io, self.out = contract.input, contract.output
        self.add_eos = add_eos
        self.eos_id = self.out.vocab if add_eos else None
        self.vocab_size = self.out.vocab + (1 if add_eos else 0)
        self.precision = precision or "fp32"
        from pipeline.tokenizers.device import device_kind
        self.device_kind = device_kind(device or "auto")  # torch is not imported for it on a machine with no GPU
        self.device = None  # the torch.device, from check()
        self._asked_batch = batch_size
        self.batch_size = batch_size if isinstance(batch_size, int) else CPU_BATCH if self.device_kind != "cuda" \
            else None  # auto on a GPU: sized in check(), from the device memory one blank input takes

    def check(self) -> None:
        if self.model is not None:
            return
        import torch
        if self.device_kind == "cuda" and not torch.cuda.is_available():  # else cpu codes under a cuda fingerprint
            raise SpecError("tokenizer.options.device: cuda, but torch sees no GPU here: run on nodes with GPUs "
                            "(resources.gpus_per_worker gives each worker one) or set it to auto or cpu")
        self.device = torch.device(self.device_kind)
        self.model = _to(self._load_model(), self.device)
        try:
            self.batch_size = self._batch_size(self._asked_batch)
            self.probe()
        except BaseException:
            self.model = None  # not checked: a later check() loads and probes again
            raise

    def files(self) -> list[Path]:
        return self._files

    def options(self) -> dict[str, Any]:
        # float encoders may give other codes on other hardware or precision: both are in the fingerprint
        return {"add_eos": self.add_eos, "precision": self.precision, "device": self.device_kind,
                "contract": self.contract.model_dump(mode="json")}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": self.options(), "batch_size": self.batch_size or "auto"}

    def decode_hints(self) -> dict[str, Any]:
        fit = self.io.size_policy == "fit"
        return {"size": self.io.size if fit else None, "patch": self.io.multiple if fit else None,
                "sample_rate": self.io.sample_rate, "fps": self.io.fps}

    def _batch_size(self, asked: int | str | None) -> int:
        if isinstance(asked, int):
            return asked
        if self.device.type != "cuda":
            return CPU_BATCH
        import torch
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        self.probe()
        per_sample = max(1, torch.cuda.max_memory_allocated() - before)
        free, _ = torch.cuda.mem_get_info()
        return int(max(1, min(GPU_MAX_BATCH, free // 2 // per_sample)))

    def probe(self) -> None:
        """One call on a blank input of the declared shape; a layout mismatch is a SpecError naming the field."""
        piece = np.zeros(self._blank_shape(), np.float32)
        try:
            codes = self._call([piece])[0]
        except ValueError as exc:
            raise SpecError(f"tokenizer.path: {self._files[-1].name} output: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - whatever the model raises on the declared input shape
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SpecError(f"tokenizer.path: {self._files[-1].name} input: the model fails on a blank input "
                            f"{list(piece.shape)} (batch 1): {type(exc).__name__}: {first}") from None
        if self.io.kind == "image" and "h" in self.out.dims:
            got = codes.shape[self.out.dims.index("h")], codes.shape[self.out.dims.index("w")]
            want = piece.shape[1] // self.io.multiple, piece.shape[2] // self.io.multiple
            if got != want:
                raise SpecError(f"tokenizer.path: {self._files[-1].name} input.multiple: {piece.shape[1:]} gave a "
                                f"{got[0]}x{got[1]} grid, not {want[0]}x{want[1]}")
        self._probe_other_shape()

    def _probe_other_shape(self) -> None:
        """Where the contract gives inputs of more than one shape (`fit` images and video, whole audio files),
        one more blank call at another of them: a program exported for one shape only is refused here rather
        than failing on most samples of the run."""
        shape = list(self._blank_shape())
        if self.io.kind == "audio" and self.io.clip_seconds is None:
            shape[-1] += self.io.multiple
        elif self.io.kind in ("image", "video") and self.io.size_policy == "fit" and self.io.size > self.io.multiple:
            shape[-1] = max(self.io.multiple, self.io.size // 2 // self.io.multiple * self.io.multiple)
        else:
            return
        try:
            self._call([np.zeros(shape, np.float32)])
        except Exception as exc:  # noqa: BLE001 - whatever the model raises on that shape
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            policy = "clip_seconds: null (whole files)" if self.io.kind == "audio" else "size_policy: fit"
            raise SpecError(f"tokenizer.path: {self._files[-1].name} input.{policy} gives "
                            f"inputs of other shapes, and the model fails on {shape} (batch 1): "
                            f"{type(exc).__name__}: {first}; export it with dynamic shapes "
                            "(torch.export.Dim) or declare a fixed shape") from None

    def _blank_shape(self) -> tuple[int, ...]:
        if self.io.kind == "audio":
            n = round((self.io.clip_seconds or 1.0) * self.io.sample_rate)
            return (1, -(-n // self.io.multiple) * self.io.multiple)
        if self.io.kind == "video":
            return (3, self.io.frames_per_clip, self.io.size, self.io.size)
        return (3, self.io.size, self.io.size)

    def encode_batch(self, samples: list[Any]) -> TokenBatch:
        """Every sample's pieces, bucketed by shape, through the model in calls of up to batch_size."""
        from pipeline.tokenizers.encoder_io import pieces_of
        self.check()
        pieces = [pieces_of(s, self.io) for s in samples]
        flat = [p for ps in pieces for p in ps]
        buckets: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(flat):
            buckets.setdefault(p.shape, []).append(i)
        codes: list[np.ndarray | None] = [None] * len(flat)
        for index in buckets.values():
            for start in range(0, len(index), self.batch_size):
                chunk = index[start:start + self.batch_size]
                for i, c in zip(chunk, self._call([flat[i] for i in chunk])):
                    codes[i] = c
        outputs, at = [], 0
        for ps in pieces:
            outputs.append(self._layout([codes[at + k] for k in range(len(ps))]))
            at += len(ps)
        batch = with_eos([o.reshape(-1) for o in outputs], self.eos_id)
        batch.shapes = [list(o.shape) for o in outputs]
        return batch

    def _call(self, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """Codes [dims] per piece from one model call (halved and retried on device out-of-memory)."""
        import torch
        try:
            return self._forward(np.stack(pieces))
        except torch.cuda.OutOfMemoryError:
            if len(pieces) == 1:
                raise
            torch.cuda.empty_cache()
            half = len(pieces) // 2
            return self._call(pieces[:half]) + self._call(pieces[half:])

    def _forward(self, batch: np.ndarray) -> list[np.ndarray]:
        import torch
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        dtype = getattr(torch, DTYPES[self.precision])
        with torch.inference_mode(), torch.autocast(self.device.type, dtype, enabled=self.precision != "fp32"):
            out = self.model(x)
        return check_codes(out, len(batch), self.out)

    def _layout(self, parts: list[np.ndarray]) -> np.ndarray:
        """One sample's codes: pieces joined in time, codebook offsets added, q moved for the flatten order."""
        dims = self.out.dims
        codes = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=dims.index("t"))
        if "q" not in dims:
            return codes
        q = dims.index("q")
        if self.out.offsets:
            shape = [1] * codes.ndim
            shape[q] = -1
            codes = codes + (np.arange(codes.shape[q]) * self.out.vocab_per_codebook).reshape(shape)
        return np.moveaxis(codes, q, 0 if self.out.flatten == "codebook-major" else -1)

    def decode(self, ids: np.ndarray, shape: list[int] | None = None) -> np.ndarray:
        """No decoder ships with an encoder: the ids themselves, EOS dropped."""
        ids = np.asarray(ids, np.int64)
        return ids[ids != self.eos_id] if self.eos_id is not None else ids


def check_codes(out: Any, n: int, layout: OutputContract) -> list[np.ndarray]:
    """Per-piece int64 codes, or a ValueError that says how the output breaks the contract."""
    import torch
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the encoder returned {type(out).__name__}, not a tensor")
    if out.is_floating_point():
        nan = " (NaN present)" if torch.isnan(out).any() else ""
        raise ValueError(f"the encoder returned {str(out.dtype).replace('torch.', '')} values{nan}, not integer codes")
    if out.dim() != len(layout.dims) + 1 or out.shape[0] != n:
        raise ValueError(f"the encoder returned shape {list(out.shape)}; dims declares [batch={n}, "
                         f"{', '.join(layout.dims)}]")
    if "q" in layout.dims and out.shape[1 + layout.dims.index("q")] != layout.codebooks:
        raise ValueError(f"the encoder returned {out.shape[1 + layout.dims.index('q')]} codebooks; "
                         f"codebooks declares {layout.codebooks}")
    codes = out.cpu().numpy().astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= layout.vocab_per_codebook):
        raise ValueError(f"the encoder returned ids outside [0, {layout.vocab_per_codebook}): "
                         f"{codes.min()}..{codes.max()}")
    return list(codes)


def _to(model, device):
    try:
        return model.to(device)
    except (RuntimeError, NotImplementedError):  # some exported modules refuse .to(): they stay on CPU
        return model


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_encoder(spec) -> EncoderTokenizer:
    """The tokenizer of a `torchscript` (with sidecar), `torch-export` or `torch-factory` spec, its model not
    loaded yet (`EncoderTokenizer.check` loads and probes it; `build_tokenizer` calls that unless told not to).
    What can be refused without the model is refused here: the contract, a .pt pickle, a factory not trusted."""
    from pipeline.storage import local_file
    local = Path(local_file(spec.path))
    contract = load_contract(sidecar_of(local), spec)
    if spec.kind == "torch-factory":
        factory, source = load_factory(spec.factory, spec.trust_code)
        load_model, files = partial(make_model, factory, spec.factory), [source, local]
    else:
        if spec.kind == "torch-export" and local.suffix != ".pt2":
            raise SpecError(f"tokenizer.path: {local.name}: a torch-export program is a .pt2 file "
                            "(a .pt pickle is never loaded)")
        if spec.kind == "torch-export" and not _is_pt2_archive(local):
            load_program("export", local)  # raises the SpecError that says how to save a program
        load_model = partial(load_program, "torchscript" if spec.kind == "torchscript" else "export", local)
        files = [local, sidecar_of(local)]
    return EncoderTokenizer(spec.kind, load_model, files, contract, add_eos=spec.add_eos,
                            batch_size=spec.batch_size, precision=spec.precision,
                            device=getattr(spec.options, "device", None))
