"""`tokenmill bench text`: a thin entry to tests/bench/bench_text.py, which lives with the other benchmarks.

The benchmark harness is not part of the installed package; this runs it from a source
checkout (the one an editable install points at) and says so when there is none.
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "tests" / "bench" / "bench_text.py"


def cli_bench(args: argparse.Namespace) -> int:
    """`tokenmill bench text [...]` (arguments in pipeline.cli)."""
    from pipeline.errors import SpecError
    if not SCRIPT.is_file():
        raise SpecError(f"bench: {SCRIPT} not found; the benchmarks run from a source checkout "
                        "(git clone, then `pip install -e .`)")
    sys.argv = [str(SCRIPT), *args.rest]
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    except SystemExit as done:
        return int(done.code or 0)
    return 0
