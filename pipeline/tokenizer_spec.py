"""One spec model per tokenizer kind: the fields and options each kind reads, and what it gives the stages.

A key that a kind does not read is refused by name (`extra="forbid"` at every level), so
`options: {devcie: cuda}` or `fps` on an `hf` tokenizer fails at spec time instead of being ignored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator


class SpecModel(BaseModel):
    """Every spec model: frozen, and a key it does not know is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class TokenizerTraits:
    """What a tokenizer gives the stages: known from its kind at parse time, checked again once built."""

    has_codebook: bool
    has_token_bytes: bool
    vocab_size: int | None = None  # known once the tokenizer is built


class NoOptions(SpecModel):
    """The options of a kind that reads none: any key here is a typo."""


class DeviceOptions(SpecModel):
    device: Literal["auto", "cpu", "cuda"] | None = Field(
        None, description="where codes are computed; null: auto (cuda when the worker has a GPU)")


SpecialTokens = dict[Annotated[str, Field(min_length=1)], Annotated[int, Field(ge=0)]]  # name -> id


class TextOptions(SpecModel):
    """What marks documents in a text tokenizer's ids, and whether a document may spell a special token.

    Every field defaults to null, so a spec that sets none hashes as it did before they existed.
    """

    eos_token: str | None = Field(None, min_length=1, description="the token appended to every document")
    eos_id: int | None = Field(None, ge=0, description="the EOS by id instead of by name; both given must agree")
    bos_token: str | None = Field(None, min_length=1, description="a token put before every document; null: none")
    special_tokens: SpecialTokens | None = Field(
        None, description="special tokens, name: id")
    allow_special: bool | None = Field(
        None, description="true: special-token text in a document becomes that token's id; null or false: it is "
                          "ordinary text, so special ids appear only where tokenmill puts them (EOS, BOS)")


class HFOptions(TextOptions):
    eos_token: str | None = Field(None, min_length=1, description="the EOS token; null: the first of <|endoftext|>, "
                                                                  "</s>, <eos>, <|end_of_text|>, [SEP] in the vocabulary")
    special_tokens: SpecialTokens | None = Field(
        None, description="name: id pairs the tokenizer.json must hold (checked when it loads)")


class TiktokenOptions(TextOptions):
    eos_token: str | None = Field(None, min_length=1, description="the EOS token, one of the special tokens; "
                                                                  "null: <|endoftext|>")
    special_tokens: SpecialTokens | None = Field(
        None, description="name: id of the special tokens; required for a rank file that is not a known "
                          "encoding; for a known one they are added to its official special tokens")


class TorchScriptOptions(DeviceOptions):
    vocab_size: int | None = Field(None, ge=1, description="null: the model's `vocab_size` attribute")
    image_size: int | None = Field(None, ge=1, description="image side in pixels; null: 256")
    patch_size: int | None = Field(None, ge=1, description="null: 16")


# spec_hash reads every kind's tokenizer as one loose model: fields a kind lacks hash as these defaults
_HASHED_DEFAULTS = {"pattern": None, "fps": None, "sample_rate": None}
# not in spec_hash: where the tokenizer file is (its content is the ledger's tokenizer_fingerprint) and the
# engine (every engine `auto` may pick gives the reference's ids; a named inexact one is added by the job)
_NOT_HASHED = {"options", "path", "engine"}


class BaseTokenizerSpec(SpecModel):
    """What every kind has; the class variables say what its tokenizer gives and takes."""

    kind: str
    add_eos: bool = True
    options: NoOptions = NoOptions()
    modalities: ClassVar[tuple[str, ...]] = ()
    has_codebook: ClassVar[bool] = False
    has_token_bytes: ClassVar[bool] = False

    def traits(self, vocab_size: int | None = None) -> TokenizerTraits:
        return TokenizerTraits(self.has_codebook, self.has_token_bytes, vocab_size)

    def hash_data(self) -> dict[str, Any]:
        """The tokenizer part of spec_hash: what changes ids; options not given (null) are left out."""
        data = {**_HASHED_DEFAULTS, **self.model_dump(mode="json", exclude=_NOT_HASHED)}
        return {**data, "options": self.options.model_dump(mode="json", exclude_none=True)}


_PATH = Field(description="the tokenizer file, local or fsspec URL (make one with `tokenmill train`)")


class HFTokenizerSpec(BaseTokenizerSpec):
    kind: Literal["hf"]
    path: str = _PATH
    engine: Literal["auto", "hf", "tiktoken", "gigatoken"] = "auto"
    options: HFOptions = HFOptions()
    modalities: ClassVar[tuple[str, ...]] = ("text", "code", "binary")
    has_token_bytes: ClassVar[bool] = True


class TiktokenSpec(BaseTokenizerSpec):
    kind: Literal["tiktoken"]
    path: str = Field(description="a .tiktoken rank file (plain or .gz), local or fsspec URL")
    engine: Literal["auto", "tiktoken", "gigatoken"] = "auto"
    pattern: str | None = Field(None, description="the split regex; null: the official one of a known encoding "
                                                  "(r50k_base, p50k_base, cl100k_base, o200k_base, recognised by "
                                                  "the ranks' content); required for any other rank file")
    options: TiktokenOptions = TiktokenOptions()
    modalities: ClassVar[tuple[str, ...]] = ("text", "code")
    has_token_bytes: ClassVar[bool] = True


class BytesSpec(BaseTokenizerSpec):
    kind: Literal["bytes"]
    modalities: ClassVar[tuple[str, ...]] = ("text", "code", "binary")
    has_token_bytes: ClassVar[bool] = True


class BinaryBPESpec(BaseTokenizerSpec):
    kind: Literal["binary-bpe"]
    path: str = _PATH
    modalities: ClassVar[tuple[str, ...]] = ("binary",)
    has_token_bytes: ClassVar[bool] = True


class ImageVQSpec(BaseTokenizerSpec):
    kind: Literal["image-vq"]
    path: str = _PATH
    options: DeviceOptions = DeviceOptions()
    modalities: ClassVar[tuple[str, ...]] = ("image",)
    has_codebook: ClassVar[bool] = True


class AudioMuLawSpec(BaseTokenizerSpec):
    kind: Literal["audio-mulaw"]
    sample_rate: int | None = Field(None, ge=1, description="Hz the audio is resampled to; null: 16000")
    modalities: ClassVar[tuple[str, ...]] = ("audio",)


class AudioVQSpec(BaseTokenizerSpec):
    kind: Literal["audio-vq"]
    path: str = _PATH
    options: DeviceOptions = DeviceOptions()
    modalities: ClassVar[tuple[str, ...]] = ("audio",)
    has_codebook: ClassVar[bool] = True


class VideoSpec(BaseTokenizerSpec):
    kind: Literal["video"]
    path: str = _PATH
    fps: float | None = Field(None, gt=0, description="frames a second taken from the video; null: 5")
    options: DeviceOptions = DeviceOptions()
    modalities: ClassVar[tuple[str, ...]] = ("video",)
    has_codebook: ClassVar[bool] = True


class EncoderSpec(BaseTokenizerSpec):
    """What every neural-encoder kind has: batching and precision (null fields stay out of spec_hash)."""

    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        None, description="pieces per model call; null or auto: from free device memory on a GPU, 1 on CPU")
    precision: Literal["fp32", "bf16", "fp16"] | None = Field(None, description="null: fp32")
    modalities: ClassVar[tuple[str, ...]] = ("image", "audio", "video")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size_said_once(cls, value: Any) -> Any:
        """One clause for a bad batch size, not one per branch of the union."""
        if value is None or value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f"{value!r} is not a batch size: give an integer >= 1 or auto")

    def hash_data(self) -> dict[str, Any]:
        data = super().hash_data()
        return {k: v for k, v in data.items() if k not in ("batch_size", "precision", "trust_code") or v}


class TorchScriptSpec(EncoderSpec):
    kind: Literal["torchscript"]
    path: str = _PATH
    sample_rate: int | None = Field(None, ge=1, description="Hz of the audio given to the model")
    fps: float | None = Field(None, gt=0, description="frames a second given to the model")
    options: TorchScriptOptions = TorchScriptOptions()


class TorchExportSpec(EncoderSpec):
    kind: Literal["torch-export"]
    path: str = Field(description="a torch.export program (.pt2) with its contract X.json next to it")
    sample_rate: int | None = Field(None, ge=1, description="null: the contract's; given, they must agree")
    fps: float | None = Field(None, gt=0, description="null: the contract's; given, they must agree")
    options: DeviceOptions = DeviceOptions()


class TorchFactorySpec(EncoderSpec):
    kind: Literal["torch-factory"]
    path: str = Field(description="the contract JSON of the model the factory returns")
    factory: str = Field(description="module:function returning a torch.nn.Module; runs that Python code")
    trust_code: bool = Field(False, description="must be true: the factory's code runs in every worker")
    sample_rate: int | None = Field(None, ge=1, description="null: the contract's; given, they must agree")
    fps: float | None = Field(None, gt=0, description="null: the contract's; given, they must agree")
    options: DeviceOptions = DeviceOptions()


TOKENIZER_SPECS: dict[str, type[BaseTokenizerSpec]] = {
    "hf": HFTokenizerSpec, "tiktoken": TiktokenSpec, "bytes": BytesSpec, "binary-bpe": BinaryBPESpec,
    "image-vq": ImageVQSpec, "audio-mulaw": AudioMuLawSpec, "audio-vq": AudioVQSpec, "video": VideoSpec,
    "torchscript": TorchScriptSpec, "torch-export": TorchExportSpec, "torch-factory": TorchFactorySpec}
AnyTokenizerSpec = Annotated[Union[tuple(TOKENIZER_SPECS.values())], Field(discriminator="kind")]
TOKENIZER_ADAPTER = TypeAdapter(AnyTokenizerSpec)
