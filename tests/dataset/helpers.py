"""A real output folder written by real units (UnitProcessor, no Ray) over real stdlib code."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.plan import WorkUnit, make_plan
from pipeline.spec import JobSpec, parse_spec
from pipeline.unit import UnitProcessor
from tests.tm_testing import copy_stdlib


@dataclass
class Committed:
    spec: JobSpec
    units: list[WorkUnit]
    out: Path
    outside: Path  # a file beside the output folder that nothing may ever touch


def commit_all(tmp_path: Path, formats: tuple[str, ...] = ("arrow", "webdataset")) -> Committed:
    copy_stdlib(tmp_path / "corpus", ("json",))
    spec = parse_spec({"name": "contract", "tokenizer": {"kind": "bytes"},
                       "source": {"uri": str(tmp_path / "corpus"), "modality": "code", "unit_bytes": 20_000},
                       "sink": {"uri": str(tmp_path / "out"), "formats": list(formats)}})
    units = make_plan(spec)
    processor = UnitProcessor(spec)
    for unit in units:
        processor(unit)
    outside = tmp_path / "precious.txt"
    outside.write_text("not tokenmill's")
    return Committed(spec, units, tmp_path / "out", outside)
