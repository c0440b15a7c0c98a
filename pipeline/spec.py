"""Job spec: frozen, typed pydantic models loaded from YAML.

A bad spec fails on the driver before any work starts, with a SpecError whose message
names the field and the fix. Everything else in tokenmill takes a `JobSpec`.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import SpecError


_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value: int | str) -> int:
    """Turn 123, "64MiB" or "1.5GB" into a byte count."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    if not match or match.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {value!r} (use an integer or e.g. '128MiB')")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


ByteSize = Annotated[int, BeforeValidator(parse_size), Field(ge=1, description="bytes: an integer or e.g. '128MiB'")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Modality = Literal["text", "code", "binary", "image", "audio", "video"]
TEXT_MODALITIES = ("text", "code")


class DecodeLimits(_Model):
    """Upper bounds applied while decoding one input; larger inputs are quarantined."""

    max_bytes: ByteSize = 256 << 20
    max_pixels: int = 64_000_000
    max_seconds: float = 3600.0
    max_frames: int = 4096


class SourceSpec(_Model):
    uri: str | list[str]
    format: Literal["files", "lines", "jsonl", "parquet", "webdataset"] = "files"
    modality: Modality = "text"
    field: str = "text"
    column: str = "text"
    unit_bytes: ByteSize = 64 << 20
    encoding_errors: Literal["quarantine", "replace"] = "quarantine"
    limits: DecodeLimits = DecodeLimits()
    storage_options: dict[str, Any] = {}

    @property
    def uris(self) -> list[str]:
        return [self.uri] if isinstance(self.uri, str) else list(self.uri)


class TokenizerSpec(_Model):
    kind: str
    path: str | None = None
    engine: Literal["auto", "hf", "tiktoken", "gigatoken"] = "auto"
    add_eos: bool = True
    pattern: str | None = None
    fps: float | None = None
    sample_rate: int | None = None
    options: dict[str, Any] = {}


class DynamicSpec(_Model):
    kind: Literal["dynamic"]
    max_merges: int = Field(4096, ge=0)
    min_count: int = Field(2, ge=2)
    scope: Literal["batch", "shard"] = "shard"
    batch_size: int = Field(256, ge=1)
    within_words: bool = False

    @property
    def needs_text(self) -> bool:
        """Whether the stage reads the documents' text (the unit then keeps it for it)."""
        return self.within_words


class SpansSpec(_Model):
    kind: Literal["spans"]
    unit: Literal["word", "identifier"] = "word"
    needs_text: ClassVar[bool] = True


class PruneSpec(_Model):
    kind: Literal["prune"]
    keep: float = Field(0.25, gt=0)
    needs_text: ClassVar[bool] = False


class TemporalSpec(_Model):
    kind: Literal["temporal"]
    threshold: float = Field(0.0, ge=0)
    needs_text: ClassVar[bool] = False


StageSpec = Annotated[Union[DynamicSpec, SpansSpec, PruneSpec, TemporalSpec], Field(discriminator="kind")]

STAGE_MODALITIES: dict[str, tuple[str, ...]] = {
    "dynamic": ("text", "code", "binary", "image", "audio", "video"),
    "spans": TEXT_MODALITIES,
    "prune": ("image", "video"),
    "temporal": ("video",),
}


class SinkSpec(_Model):
    uri: str
    formats: list[Literal["arrow", "parquet", "webdataset"]] = ["arrow"]
    keep_source: bool = False
    storage_options: dict[str, Any] = {}

    @field_validator("formats")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one output format: arrow, parquet or webdataset")
        if len(set(v)) != len(v):
            raise ValueError(f"formats listed twice: {v}")
        return v


class ResourcesSpec(_Model):
    workers: int | Literal["auto"] = "auto"
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    max_retries: int = Field(3, ge=0)


class JobSpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    source: SourceSpec
    tokenizer: TokenizerSpec
    stages: list[StageSpec] = []
    sink: SinkSpec
    resources: ResourcesSpec = ResourcesSpec()
    on_error: Literal["quarantine", "fail"] = "quarantine"
    report: bool = True

    @model_validator(mode="after")
    def _stages_fit_modality(self) -> "JobSpec":
        for i, stage in enumerate(self.stages):
            allowed = STAGE_MODALITIES[stage.kind]
            if self.source.modality not in allowed:
                raise ValueError(
                    f"stages[{i}] ({stage.kind}) does not apply to modality "
                    f"'{self.source.modality}'; it works on: {', '.join(allowed)}")
        return self

    def spec_hash(self) -> str:
        """Hash of everything that changes shard contents (not sink location or resources)."""
        data = self.model_dump(mode="json", exclude={"sink": {"uri", "storage_options"},
                                                     "resources": True, "report": True})
        data["source"].pop("storage_options", None)
        data["source"].pop("uri", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key; remove it or check its spelling")
        elif e["type"] == "missing":
            lines.append(f"{where}: required key is missing")
        else:
            lines.append(f"{where}: {e['msg']}")
    return "; ".join(lines)


def parse_spec(data: Any, origin: str = "spec", base: Path | None = None) -> JobSpec:
    """Validate a parsed YAML/JSON mapping into a JobSpec (paths relative to `base`), or raise SpecError."""
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: a job spec is a mapping with name, source, tokenizer, sink")
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(f"{origin}: {_format_error(err)}") from None
    if base is not None:
        spec = _resolve_relative_paths(spec, base)
    from pipeline.tokenizers import check_tokenizer_spec
    check_tokenizer_spec(spec)
    return spec


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> JobSpec:
    """Read a YAML job file; `overrides` maps dotted keys (sink.uri) to new values."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"job spec not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{p}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{p}: a job spec is a mapping with name, source, tokenizer, sink")
    for key, value in (overrides or {}).items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return parse_spec(data, origin=str(p), base=p.parent)


def _resolve_relative_paths(spec: JobSpec, base: Path) -> JobSpec:
    """Paths in a spec are relative to the spec file, as users expect."""
    def fix(uri: str) -> str:
        if "://" in uri or uri.startswith("/"):
            return uri
        return str((base / uri).resolve()) if not uri.startswith("~") else str(Path(uri).expanduser())
    source = spec.source.model_copy(update={
        "uri": fix(spec.source.uri) if isinstance(spec.source.uri, str) else [fix(u) for u in spec.source.uri]})
    tokenizer = spec.tokenizer.model_copy(update={"path": fix(spec.tokenizer.path) if spec.tokenizer.path else None})
    sink = spec.sink.model_copy(update={"uri": fix(spec.sink.uri)})
    return spec.model_copy(update={"source": source, "tokenizer": tokenizer, "sink": sink})


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the job spec, as written to schemas/job.schema.json."""
    return JobSpec.model_json_schema()
