"""The CLI on the base install (`pip install tokenmill`, no extras): help, train and validate work.

Each test runs the CLI in a fresh interpreter where the extras' packages cannot be imported, as
in a venv without them; building the parser imports no command's module.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from pipeline.cli import COMMANDS

# the top-level packages of the media, report and fast extras (and torch, installed by hand)
EXTRAS = ("pandas", "dask", "matplotlib", "torch", "PIL", "av", "soundfile", "safetensors", "gigatoken", "orjson")
PRELUDE = f"""
import sys
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, NotInstalled())
"""
ROOT = Path(__file__).resolve().parent.parent


def base_python(code: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", ""),
                                            "HOME": os.environ.get("HOME", str(cwd)),
                                            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})


def tokenmill(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return base_python("from pipeline.cli import main\nsys.exit(main(sys.argv[1:]))", *args, cwd=cwd)


def test_help_of_every_command_imports_no_command_module():
    code = """
import contextlib, io, json
from pipeline.cli import COMMANDS, build_parser
codes = {}
for argv in [["--help"]] + [[name, "--help"] for name in COMMANDS]:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as done:
        codes[" ".join(argv)] = done.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] == "ray" or m.startswith(
    ("pipeline.report", "pipeline.submit", "pipeline.sinks", "pipeline.job", "pipeline.bench_entry")))
print(json.dumps({"codes": codes, "imported": heavy}))
"""
    result = base_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout)
    assert seen["codes"] == {" ".join(a): 0 for a in [["--help"]] + [[n, "--help"] for n in COMMANDS]}
    assert seen["imported"] == []


def test_train_then_validate_a_text_job(tmp_path):
    corpus = tmp_path / "x"
    corpus.mkdir()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("json/decoder.py", "json/encoder.py", "email/message.py", "textwrap.py"):
        (corpus / name.replace("/", "_")).with_suffix(".txt").write_text((stdlib / name).read_text())
    trained = tokenmill("train", "--input", "x/*.txt", "--output", "tok.json", "--vocab-size", "400", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads(trained.stdout.splitlines()[-1]) and (tmp_path / "tok.json").is_file()
    (tmp_path / "job.yaml").write_text("name: base\nsource: {uri: 'x/*.txt', modality: text}\n"
                                       "tokenizer: {kind: hf, path: tok.json}\n"
                                       "stages: [{kind: spans}, {kind: dynamic, max_merges: 64}]\n"
                                       "sink: {uri: out}\n")
    validated = tokenmill("validate", "job.yaml", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr[-3000:]
    assert "valid job spec" in validated.stdout and "tokenizer hf with 400 ids" in validated.stdout


def test_a_command_that_needs_an_extra_says_which(tmp_path):
    result = tokenmill("stats", str(tmp_path))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert re.fullmatch(r"tokenmill: error: stats: needs the package '(pandas|dask|matplotlib)', which is not "
                        r"installed; pip install 'tokenmill\[report\]'", line), line
