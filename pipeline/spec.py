"""Job spec: frozen, typed pydantic models loaded from YAML.

A bad spec fails on the driver before any work starts, with a SpecError whose message
names the field and the fix. Everything else in tokenmill takes a `JobSpec`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Sequence, Union

import yaml
from pydantic import BeforeValidator, Field, Strict, ValidationError, field_validator, model_validator

from pipeline.errors import SpecError
from pipeline.tokenizer_spec import (TOKENIZER_ADAPTER, TOKENIZER_SPECS, AnyTokenizerSpec, BaseTokenizerSpec, SpecModel,
                                     TokenizerTraits)

_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value: int | str) -> int:
    """Turn 123, "64MiB" or "1.5GB" into a byte count (true/false are not sizes)."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r} (use an integer or e.g. '128MiB')")
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    if not match or match.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {value!r} (use an integer or e.g. '128MiB')")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


ByteSize = Annotated[int, BeforeValidator(parse_size), Field(ge=1, description="bytes: an integer or e.g. '128MiB'")]
# counts are whole numbers given as such: `true` or 2.5 is refused, not read as 1 or 2
Count = Annotated[int, Strict(), Field(ge=1)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


Modality = Literal["text", "code", "binary", "image", "audio", "video"]
TEXT_MODALITIES = ("text", "code")


class DecodeLimits(SpecModel):
    """Upper bounds on one record, checked before its bytes are held; larger records are quarantined.

    max_bytes (default 256 MiB) bounds every record of every format: a file, a line, a parquet
    value, a tar sample (its members together), and the decompressed size of a compressed input.
    """

    max_bytes: ByteSize = 256 << 20
    max_pixels: Count = 64_000_000
    max_seconds: Finite = Field(3600.0, gt=0)
    max_frames: Count = 4096


class SourceSpec(SpecModel):
    uri: str | list[str]
    format: Literal["files", "lines", "jsonl", "parquet", "webdataset"] = "files"
    modality: Modality = "text"
    field: str = "text"
    column: str = "text"
    unit_bytes: ByteSize = 64 << 20
    encoding_errors: Literal["quarantine", "replace"] = "quarantine"
    limits: DecodeLimits = DecodeLimits()
    follow_symlinks: bool = Field(False, description="read symbolic links (never ones leading outside the source "
                                                     "root); false: list each as a quarantined entry")
    storage_options: dict[str, Any] = {}

    @property
    def uris(self) -> list[str]:
        return [self.uri] if isinstance(self.uri, str) else list(self.uri)


def TokenizerSpec(**fields: Any) -> BaseTokenizerSpec:  # a function named like the one model it replaces
    """The spec model of fields["kind"]; a field given as None counts as not given."""
    try:
        return TOKENIZER_ADAPTER.validate_python({k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        raise SpecError(_format_error(err, ("tokenizer",))) from None


INT32_MAX = 2**31 - 1
MAX_MERGES = 1 << 24  # the merge loop allocates ~32 bytes per allowed merge up front (pipeline/stages/merge_kernel.py)


class _Stage(SpecModel):
    modalities: ClassVar[tuple[str, ...]] = ("text", "code", "binary", "image", "audio", "video")
    needs_text: ClassVar[bool] = False

    def problem(self, modality: str, tok: TokenizerTraits) -> str | None:
        """Why this stage cannot run on that modality with that tokenizer; None when it can."""
        if self.needs_text and (modality not in TEXT_MODALITIES or not tok.has_token_bytes):
            return ("needs text with token byte strings (modality text or code with a text tokenizer), "
                    f"got modality '{modality}'")
        return None


class DynamicSpec(_Stage):
    kind: Literal["dynamic"]
    max_merges: int = Field(4096, ge=0, le=INT32_MAX, strict=True,
                            description=f"new ids at most; up to {MAX_MERGES:,} (the merge loop's memory)")
    min_count: int = Field(2, ge=2, strict=True)
    scope: Literal["batch", "shard"] = "shard"
    batch_size: Count = 256
    within_words: bool = False

    @property
    def needs_text(self) -> bool:
        """Whether the stage reads the documents' text (the unit then keeps it for it)."""
        return self.within_words

    def problem(self, modality: str, tok: TokenizerTraits) -> str | None:
        if tok.vocab_size is not None and tok.vocab_size + self.max_merges > INT32_MAX:
            return (f"base vocabulary {tok.vocab_size} + max_merges {self.max_merges} is more ids than "
                    "the merge loop holds (int32); lower max_merges")
        if tok.vocab_size is not None and self.max_merges > MAX_MERGES:  # checked with the built tokenizer, as above
            return (f"max_merges {self.max_merges:,} is more than the {MAX_MERGES:,} the merge loop supports "
                    "(it allocates ~32 bytes per merge and id in every worker up front); lower max_merges")
        return super().problem(modality, tok)


class SpansSpec(_Stage):
    kind: Literal["spans"]
    unit: Literal["word", "identifier"] = "word"
    modalities: ClassVar[tuple[str, ...]] = TEXT_MODALITIES
    needs_text: ClassVar[bool] = True


class PruneSpec(_Stage):
    kind: Literal["prune"]
    keep: float = Field(0.25, gt=0, allow_inf_nan=False, description="a fraction in (0, 1], or a whole number of tokens")
    modalities: ClassVar[tuple[str, ...]] = ("image", "video")

    @field_validator("keep")
    @classmethod
    def _keep(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"keep {v} is above 1, so it is a count and must be a whole number "
                             "(or use a fraction in (0, 1])")
        return v

    def problem(self, modality: str, tok: TokenizerTraits) -> str | None:
        return None if tok.has_codebook else "needs a tokenizer with a codebook (image-vq or video)"


class TemporalSpec(_Stage):
    kind: Literal["temporal"]
    threshold: float = Field(0.0, ge=0, allow_inf_nan=False)
    modalities: ClassVar[tuple[str, ...]] = ("video",)

    def problem(self, modality: str, tok: TokenizerTraits) -> str | None:
        if self.threshold > 0 and not tok.has_codebook:
            return ("threshold > 0 compares codebook embeddings, but the tokenizer has no codebook; "
                    "use threshold: 0 (exact match)")
        return None


StageSpec = Annotated[Union[DynamicSpec, SpansSpec, PruneSpec, TemporalSpec], Field(discriminator="kind")]
STAGE_KINDS = ("dynamic", "spans", "prune", "temporal")


def check_stages(stages: Sequence[_Stage], modality: str, tok: TokenizerTraits) -> None:
    """Every stage rule, on the driver before any work: modality, order, what the tokenizer gives."""
    for i, stage in enumerate(stages):
        where = f"stages[{i}] ({stage.kind})"
        if modality not in stage.modalities:
            raise SpecError(f"{where} does not apply to modality '{modality}'; "
                            f"it works on: {', '.join(stage.modalities)}")
        if any(s.kind == "dynamic" for s in stages[:i]):
            raise SpecError(f"{where}: " + ("give at most one dynamic stage; raise max_merges instead"
                                            if stage.kind == "dynamic" else
                                            "must come before the dynamic stage, which replaces the base token "
                                            "ids it reads; move dynamic to the end of stages"))
        problem = stage.problem(modality, tok)
        if problem:
            raise SpecError(f"{where}: {problem}")


class SinkSpec(SpecModel):
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


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(value: float | int | str) -> float:
    """Turn 90, "90s", "5m" or "1h" into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r} (use seconds or e.g. '20s', '5m', '1h')")
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*", str(value))
    if not match or match.group(2) not in _DURATION_UNITS:
        raise ValueError(f"not a duration: {value!r} (use seconds or e.g. '20s', '5m', '1h')")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration),
                     Field(gt=0, allow_inf_nan=False, description="seconds: a number or e.g. '20s', '5m', '1h'")]


def _workers(value: Any) -> Any:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"give a whole number of workers (1 or more) or 'auto', not {value!r}")


class ResourcesSpec(SpecModel):
    workers: Annotated[Union[Count, Literal["auto"]], BeforeValidator(_workers)] = "auto"
    cpus_per_worker: float = Field(1.0, gt=0, allow_inf_nan=False)
    gpus_per_worker: float = Field(0.0, ge=0, allow_inf_nan=False)
    decode_workers: Union[Annotated[int, Field(ge=0, strict=True)], Literal["auto"]] = Field(
        0, description="media only: 0 decodes in threads inside each worker; N, or auto (the CPUs the workers leave "
                       "free), decodes in Ray tasks, processes of their own, so one worker's GIL (a worker may drive "
                       "a GPU) does not bound decoding")
    max_retries: int = Field(3, ge=0, strict=True)
    unit_timeout: Duration = 3600.0  # a unit running longer has its worker killed and is retried
    stall_timeout: Duration = 120.0  # no alive node can run the work for this long: the run stops


class JobSpec(SpecModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    source: SourceSpec
    tokenizer: AnyTokenizerSpec
    stages: list[StageSpec] = []
    sink: SinkSpec
    resources: ResourcesSpec = ResourcesSpec()
    on_error: Literal["quarantine", "fail"] = "quarantine"
    on_error_max_fraction: float = Field(0.5, ge=0, le=1, allow_inf_nan=False,
                                         description="a unit with more of its records quarantined (or no sample) "
                                                     "is named in the summary and `tokenmill run` exits 3")
    report: bool = True

    @model_validator(mode="after")
    def _stages_fit(self) -> "JobSpec":
        check_stages(self.stages, self.source.modality, self.tokenizer.traits())
        return self

    @model_validator(mode="after")
    def _decode_workers_for_media(self) -> "JobSpec":
        if self.resources.decode_workers and self.source.modality not in ("image", "audio", "video"):
            raise ValueError(f"resources.decode_workers: {self.resources.decode_workers} applies to image, audio and "
                             f"video; {self.source.modality} decodes inline in each worker (remove it)")
        return self

    def spec_hash(self, inexact_engine: str | None = None) -> str:
        """Hash of what decides a shard's samples and tokens: how the source is decoded, the tokenizer's
        settings, the stages, and keep_source (the tars carry the inputs).

        Not in it: the job's name; where inputs, output and the tokenizer file are (the file's content is the
        ledger's tokenizer_fingerprint); unit_bytes (units are cut by it, and a changed unit has a new id);
        the formats (each ledger entry names its files); resources, reporting and on_error; the engine, unless
        `inexact_engine` names one the spec asked for whose ids differ from the reference engine's.
        """
        source = self.source.model_dump(mode="json", exclude={"uri", "storage_options", "follow_symlinks",
                                                                "unit_bytes"})
        tokenizer = self.tokenizer.hash_data()
        if inexact_engine:
            tokenizer["engine"] = inexact_engine
        data = {"source": source, "tokenizer": tokenizer, "stages": [s.model_dump(mode="json") for s in self.stages],
                "keep_source": self.sink.keep_source}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _format_error(err: ValidationError, prefix: tuple[Any, ...] = ()) -> str:
    """One clause per problem, each naming its key as written (tokenizer.options.device, stages.1.keep)."""
    return "; ".join(_describe(e, (*prefix, *e["loc"])) for e in err.errors())


def _describe(e: dict[str, Any], loc: tuple[Any, ...]) -> str:
    kind = loc[1] if loc[:1] == ("tokenizer",) and len(loc) > 1 and loc[1] in TOKENIZER_SPECS else None
    loc = tuple(p for i, p in enumerate(loc) if not _is_tag(loc, i))
    where, ctx = ".".join(str(p) for p in loc) or "(top level)", e.get("ctx", {})
    if e["type"] == "extra_forbidden":
        return f"{where}: {_unknown_key(loc, kind)}"
    if e["type"] == "missing" and kind and loc == ("tokenizer", "path"):
        return f"tokenizer.path: kind {kind!r} needs a path to its file (make one with `tokenmill train`)"
    if e["type"] in ("missing", "union_tag_not_found"):
        return f"{where}{'.kind' if e['type'] != 'missing' else ''}: required key is missing"
    if e["type"] == "union_tag_invalid":
        kinds = sorted(re.findall(r"'([^']*)'", ctx["expected_tags"]))
        return f"{where}.kind: unknown kind {ctx['tag']!r}; choose one of: {', '.join(kinds)}"
    if e["type"] == "value_error":  # our own validators' messages say what to fix
        return f"{where}: {ctx['error']}" if loc else str(ctx["error"])
    return f"{where}: {e['msg']}"


def _is_tag(loc: tuple[Any, ...], i: int) -> bool:
    """Whether loc[i] is the `kind` pydantic puts after a tagged union (tokenizer.hf.path, stages.0.dynamic)."""
    if i == 1 and loc[0] == "tokenizer":
        return loc[1] in TOKENIZER_SPECS
    return i >= 2 and loc[i - 2] == "stages" and isinstance(loc[i - 1], int) and loc[i] in STAGE_KINDS


def _unknown_key(loc: tuple[Any, ...], kind: str | None) -> str:
    """Say which keys the tokenizer kind does take, or which kinds a key belongs to."""
    fix = "unknown key; remove it or check its spelling"
    if kind is None or len(loc) not in (2, 3) or (len(loc) == 3 and loc[1] != "options"):
        return fix
    model = TOKENIZER_SPECS[kind]
    if len(loc) == 3:
        keys = list(model.model_fields["options"].annotation.model_fields)
        return f"{fix} (kind {kind!r} takes options: {', '.join(keys) or 'none'})"
    others = [k for k, m in TOKENIZER_SPECS.items() if loc[1] in m.model_fields]
    if others:
        return f"does not apply to kind {kind!r}, only to: {', '.join(others)}; remove it"
    return f"{fix} (kind {kind!r} takes: {', '.join(model.model_fields)})"


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
    tok, modality = spec.tokenizer, spec.source.modality
    if modality not in tok.modalities:
        raise SpecError(f"tokenizer.kind: {tok.kind!r} does not tokenize modality {modality!r}; "
                        f"it takes: {', '.join(tok.modalities)}")
    path = getattr(tok, "path", None)
    if path and "://" not in path and not Path(path).expanduser().exists():
        raise SpecError(f"tokenizer.path: file not found: {path}")
    check_apart(spec)
    return spec


def _location(uri: str) -> str:
    """A URI as a comparable location: real local paths, `protocol://bucket/key` elsewhere."""
    from pipeline.sources.listing import source_root
    if "://" in uri and not uri.startswith("file://"):
        protocol, _, rest = uri.partition("://")
        return f"{protocol}://{source_root(rest)}"
    return os.path.realpath(source_root(os.path.expanduser(uri.removeprefix("file://"))))


def check_apart(spec: JobSpec) -> None:
    """Refuse a sink inside a source (a run would read its own shards back) or a source inside the sink."""
    sink = _location(spec.sink.uri).rstrip("/")
    for uri in spec.source.uris:
        root = _location(uri).rstrip("/")
        if sink == root or sink.startswith(root + "/"):
            raise SpecError(f"sink.uri: {spec.sink.uri} lies inside source.uri {uri}; a run would read its own "
                            "output as input. Write the output outside the source folder")
        if root.startswith(sink + "/"):
            raise SpecError(f"source.uri: {uri} lies inside sink.uri {spec.sink.uri}; read inputs from outside "
                            "the output folder")


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> JobSpec:
    """Read a YAML job file; `overrides` maps dotted keys (sink.uri) to new values."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"job spec not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise SpecError(f"{p}: not UTF-8 text (byte {err.start} is {err.object[err.start:err.start + 1]!r}); "
                        "a job spec is a YAML file") from None
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
    tokenizer = spec.tokenizer
    if getattr(tokenizer, "path", None):
        tokenizer = tokenizer.model_copy(update={"path": fix(tokenizer.path)})
    sink = spec.sink.model_copy(update={"uri": fix(spec.sink.uri)})
    return spec.model_copy(update={"source": source, "tokenizer": tokenizer, "sink": sink})


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the job spec, as written to schemas/job.schema.json."""
    return JobSpec.model_json_schema()
