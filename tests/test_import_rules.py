"""The layout's import rules: Ray only where work is scheduled; the output contract stands alone."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
RAY_MODULES = {"runner.py", "submit.py"}
# the report hands its dask graph to Ray's scheduler only when the caller is already connected
# (sys.modules lookup, never a fresh import of ray)
GUARDED = {"report/stats.py"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_only_the_scheduling_modules_import_ray() -> None:
    found = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
             if any(n == "ray" or n.startswith("ray.") for n in _imports(p))}
    assert found - GUARDED == RAY_MODULES


def test_dataset_package_depends_on_nothing_above_it() -> None:
    checked = 0
    for path in (PACKAGE / "dataset").glob("*.py"):
        inner = {n for n in _imports(path) if n.startswith("pipeline")}
        assert inner <= {"pipeline.dataset", "pipeline.dataset.layout", "pipeline.dataset.records",
                         "pipeline.storage"}, (path.name, inner)
        checked += 1
    assert checked >= 3


def test_readers_load_without_ray_or_torch() -> None:
    code = ("import sys, pipeline.dataset.read, pipeline.loader.index, pipeline.report.build, pipeline.lineage, "
            "pipeline.status, pipeline.decode_sample, pipeline.ledger, pipeline.job; "
            "print(sorted(m for m in ('ray', 'torch', 'dask', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.strip()
    assert out == "['dask']", out  # report.build is the dask report; nothing else loads
