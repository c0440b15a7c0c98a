"""The machine-readable contracts in schemas/: job spec, shard columns, and the records of pipeline.dataset.

`python -m pipeline.schemas` rewrites the files; tests/test_spec.py fails when they drift.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.dataset import layout
from pipeline.dataset.layout import SHARD_FORMAT_VERSION
from pipeline.dataset.records import RECORDS
from pipeline.shard import SPAN_TYPE, base_schema
from pipeline.spec import json_schema

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

OPTIONAL_COLUMNS = {"spans": str(pa.list_(SPAN_TYPE)), "positions": str(pa.list_(pa.int32()))}


def shard_schema() -> dict[str, Any]:
    """The Arrow shard columns as JSON: required columns in order, then optional ones."""
    columns = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in base_schema("uint16")]
    columns[3]["type"] = "list<item: uint16> | list<item: uint32>"
    return {"title": "tokenmill shard (Arrow IPC / Parquet)", "format_version": SHARD_FORMAT_VERSION, "columns": columns,
            "optional_columns": [{"name": k, "type": v} for k, v in OPTIONAL_COLUMNS.items()],
            "metadata_keys": [layout.META_FORMAT_VERSION, layout.META_TOKENIZER, layout.META_SPEC_HASH,
                              layout.META_BASE_VOCAB, f"{layout.META_DYNAMIC} (optional)"]}


def _record_schema(name: str, title: str):
    def schema() -> dict[str, Any]:
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title,
                **RECORDS[name].model_json_schema()}
    return schema


SCHEMAS = {"job.schema.json": json_schema, "shard.schema.json": shard_schema,
           "dataset.schema.json": _record_schema("dataset", "tokenmill dataset.json"),
           "ledger.schema.json": _record_schema("ledger", "tokenmill ledger entry (_ledger/<unit>.json)"),
           "run_state.schema.json": _record_schema("run_state", "tokenmill run state (_run.json)")}


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
