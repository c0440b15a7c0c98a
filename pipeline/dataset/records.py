"""Typed, validated records of the output folder: ledger entries, the index, the run state, quarantine rows.

Writers build these records and readers parse them back; `schemas/` is generated from
them (`python -m pipeline.schemas`). Parsing is strict about what tokenmill relies on
(types, counts >= 0, paths that are tokenmill's own names) and keeps unknown keys, so a
newer writer's extra fields survive a rewrite. A record that fails raises RecordError
with the file name and the reason in one line.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.dataset import layout

Format = Literal["arrow", "parquet", "webdataset"]
NonNegative = Annotated[int, Field(ge=0)]


class RecordError(ValueError):
    """A record of the output folder that cannot be used; the message names the file and the reason."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")
    # to_bytes indents for people reading the file; None for records written once per unit, whose thousands of
    # inputs json's pure-Python indenting encoder took ~60 ms to write (its C encoder: a few ms)
    json_indent: ClassVar[int | None] = 1

    @classmethod
    def parse(cls, data: bytes | str | Any, origin: str):
        """Validate JSON text (or an already parsed object) into the record, or raise RecordError."""
        try:
            obj = json.loads(data) if isinstance(data, (bytes, str)) else data
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordError(f"{origin}: not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise RecordError(f"{origin}: expected a JSON object, found {type(obj).__name__}")
        try:
            return cls.model_validate(obj)
        except ValidationError as err:
            raise RecordError(f"{origin}: {_first_problem(err)}") from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, indent=self.json_indent).encode()


def _first_problem(err: ValidationError) -> str:
    problems = []
    for e in err.errors()[:3]:
        where = ".".join(str(p) for p in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    more = f" (+{err.error_count() - 3} more)" if err.error_count() > 3 else ""
    return "; ".join(problems) + more


class ShardFile(_Record):
    """One file of a shard: where it is, its size and sha256."""

    path: str
    size: NonNegative
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class InputSlice(_Record):
    """The part of one input a unit covered: the whole file, a byte range or row groups."""

    uri: str
    size: NonNegative
    version: str = ""
    start: int = 0
    end: int | None = None


class RunInfo(_Record):
    """When and where a unit ran (never inside shards)."""

    host: str = ""
    pid: int = 0
    started: float
    finished: float
    seconds: float = 0.0
    attempt: int = 1
    engine: str = ""
    # seconds of the unit in each phase (pipeline.unit.PHASES): where a worker's time goes
    phases: dict[str, float] = {}


def _check_files(shard: str, files: dict[str, ShardFile]) -> None:
    if not files:
        raise ValueError("no shard files")
    for fmt, info in files.items():
        layout.check_shard_path(info.path, shard, fmt)


class Counts(_Record):
    n_samples: NonNegative
    n_tokens: NonNegative
    n_bytes: NonNegative
    n_errors: NonNegative  # inputs quarantined: bad input, with its reason in _errors/
    n_empty: NonNegative = 0  # empty inputs (zero-byte files, empty documents), skipped; listed in _errors/ too


COUNTS = ("n_samples", "n_tokens", "n_bytes", "n_errors", "n_empty")


class LedgerEntry(Counts):
    """`_ledger/<unit>.json`: the commit record of one unit and its shard files (one line: written per unit)."""

    json_indent: ClassVar[int | None] = None

    version: Literal[1] = layout.LEDGER_VERSION
    unit: str
    fingerprint: str
    shard: str
    spec_hash: str
    tokenizer_fingerprint: str
    inputs: list[InputSlice]
    files: dict[Format, ShardFile]
    stage_stats: dict[str, dict[str, Any]] = {}
    run: RunInfo
    # the folder the shard's sample ids and sources are names below (json/decoder.py for <root>/json/decoder.py);
    # "" in entries written before ids were relative: those ids are the inputs' full URIs
    source_root: str = ""

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str) -> str:
        return layout.check_unit_id(v)

    @model_validator(mode="after")
    def _own_names(self) -> "LedgerEntry":
        if self.shard != layout.shard_name(self.unit, self.fingerprint):
            raise ValueError(f"shard {self.shard!r} is not this unit's shard (another unit's, or edited)")
        _check_files(self.shard, self.files)
        return self


class IndexShard(Counts):
    """One shard as dataset.json lists it."""

    name: str
    unit: str = ""  # informational here: the ledger entry, not the index, names the unit's files
    files: dict[Format, ShardFile]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return layout.check_shard_name(v)

    @model_validator(mode="after")
    def _own_names(self) -> "IndexShard":
        _check_files(self.name, self.files)
        return self

    @classmethod
    def from_entry(cls, entry: LedgerEntry) -> "IndexShard":
        return cls(name=entry.shard, unit=entry.unit, files=entry.files, n_samples=entry.n_samples,
                   n_tokens=entry.n_tokens, n_bytes=entry.n_bytes, n_errors=entry.n_errors,
                   n_empty=entry.n_empty)


class TokenizerInfo(_Record):
    """What the index says about the tokenizer; its files are copied under tokenizer/."""

    kind: str
    fingerprint: str
    vocab_size: int = Field(ge=1)
    eos_id: int | None = None
    engine: str = ""
    files: list[str] = []
    options: dict[str, Any] = {}

    @field_validator("files")
    @classmethod
    def _files(cls, v: list[str]) -> list[str]:
        return [layout.check_tokenizer_path(p) for p in v]


class Totals(Counts):
    n_shards: NonNegative


class DatasetIndex(_Record):
    """dataset.json: the committed shards in plan order, the tokenizer and totals."""

    format: Literal["tokenmill.dataset"] = layout.INDEX_FORMAT
    version: Literal[1] = layout.INDEX_VERSION
    name: str = ""
    spec_hash: str = ""
    modality: str = ""
    tokenizer: TokenizerInfo
    token_dtype: Literal["uint16", "uint32"]
    formats: list[Format] = []
    stages: list[dict[str, Any]] = []
    shards: list[IndexShard]
    totals: Totals
    complete: bool = True

    @model_validator(mode="before")
    @classmethod
    def _is_an_index(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("format") != layout.INDEX_FORMAT:
            raise ValueError(f'not a tokenmill index (expected "format": "{layout.INDEX_FORMAT}")')
        if isinstance(data, dict) and data.get("version") != layout.INDEX_VERSION:
            raise ValueError(f"index version {data.get('version')!r}; this tokenmill reads version "
                             f"{layout.INDEX_VERSION} (rerun the job with this tokenmill to rewrite it)")
        return data

    @model_validator(mode="after")
    def _unique(self) -> "DatasetIndex":
        names = [s.name for s in self.shards]
        if len(set(names)) != len(names):
            raise ValueError("a shard is listed twice")
        return self


RunStateName = Literal["running", "finished", "failed"]


class RunState(_Record):
    """`_run.json`: the latest run's state, written at its start and end."""

    state: RunStateName
    name: str = ""
    units_total: NonNegative
    units_todo: NonNegative
    started: float
    host: str = ""
    pid: int = 0
    engine: str = ""
    finished: float | None = None
    error: str | None = None
    summary: dict[str, Any] | None = None


class EngineChoice(_Record):
    """`_engine.json`: which engine `engine: auto` chose, or the probe's verdict on an engine the spec named
    (`asked`), for which tokenizer and engine versions."""

    tokenizer_fingerprint: str
    versions: dict[str, str]
    engine: str
    report: dict[str, Any] = {}
    asked: str | None = None  # the engine the spec named; None: auto's choice


QUARANTINE_FIELDS = ("uri", "member", "reason", "stage")
QUARANTINE_SCHEMA = pa.schema([(name, pa.string()) for name in QUARANTINE_FIELDS])


def quarantine_table(rows: list[Any]) -> pa.Table:
    """`_errors/<unit>.parquet` from Quarantined rows (uri, member, reason, stage)."""
    return pa.table({k: pa.array([str(getattr(r, k)) for r in rows], pa.string()) for k in QUARANTINE_FIELDS},
                    schema=QUARANTINE_SCHEMA)


RECORDS = {"ledger": LedgerEntry, "dataset": DatasetIndex, "run_state": RunState}
