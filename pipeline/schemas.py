"""The machine-readable contracts in schemas/: job spec (generated), shard columns, index, ledger.

`python -m pipeline.schemas` rewrites the files; tests/test_schemas.py fails when they drift.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.shard import SPAN_TYPE, base_schema
from pipeline.spec import json_schema

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

OPTIONAL_COLUMNS = {"spans": str(pa.list_(SPAN_TYPE)), "positions": str(pa.list_(pa.int32()))}


def shard_schema() -> dict[str, Any]:
    """The Arrow shard columns as JSON: required columns in order, then optional ones."""
    columns = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in base_schema("uint16")]
    columns[3]["type"] = "list<item: uint16> | list<item: uint32>"
    return {"title": "tokenmill shard (Arrow IPC / Parquet)", "format_version": 1, "columns": columns,
            "optional_columns": [{"name": k, "type": v} for k, v in OPTIONAL_COLUMNS.items()],
            "metadata_keys": ["tokenmill.format_version", "tokenmill.tokenizer_fingerprint", "tokenmill.spec_hash",
                              "tokenmill.base_vocab_size", "tokenmill.dynamic_vocab (optional)"]}


def _file_entry() -> dict[str, Any]:
    return {"type": "object", "required": ["path", "size", "sha256"],
            "properties": {"path": {"type": "string"}, "size": {"type": "integer"}, "sha256": {"type": "string"}}}


COUNTS = {k: {"type": "integer", "minimum": 0} for k in ("n_samples", "n_tokens", "n_bytes", "n_errors")}


def dataset_schema() -> dict[str, Any]:
    shard = {"type": "object", "required": ["name", "unit", "files", *COUNTS],
             "properties": {"name": {"type": "string"}, "unit": {"type": "string"},
                            "files": {"type": "object", "additionalProperties": _file_entry()}, **COUNTS}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "tokenmill dataset.json",
            "type": "object",
            "required": ["format", "version", "name", "spec_hash", "tokenizer", "token_dtype", "shards", "totals"],
            "properties": {
                "format": {"const": "tokenmill.dataset"}, "version": {"const": 1}, "name": {"type": "string"},
                "spec_hash": {"type": "string"}, "modality": {"type": "string"},
                "tokenizer": {"type": "object", "required": ["kind", "fingerprint", "vocab_size"]},
                "token_dtype": {"enum": ["uint16", "uint32"]}, "formats": {"type": "array"},
                "shards": {"type": "array", "items": shard},
                "totals": {"type": "object", "required": ["n_shards", *COUNTS]}}}


def ledger_schema() -> dict[str, Any]:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "tokenmill ledger entry",
            "type": "object",
            "required": ["version", "unit", "fingerprint", "shard", "spec_hash", "tokenizer_fingerprint", "inputs",
                         "files", *COUNTS, "run"],
            "properties": {"unit": {"type": "string"}, "fingerprint": {"type": "string"},
                           "files": {"type": "object", "additionalProperties": _file_entry()},
                           "inputs": {"type": "array", "items": {"type": "object", "required": ["uri", "size"]}},
                           **COUNTS}}


SCHEMAS = {"job.schema.json": json_schema, "shard.schema.json": shard_schema,
           "dataset.schema.json": dataset_schema, "ledger.schema.json": ledger_schema}


def render(name: str) -> str:
    return json.dumps(SCHEMAS[name](), indent=2, sort_keys=True) + "\n"


def main() -> int:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name in SCHEMAS:
        (SCHEMA_DIR / name).write_text(render(name))
        print(f"wrote schemas/{name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
