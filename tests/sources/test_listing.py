"""Honest listings: every entry is read or set aside with its reason, never skipped in silence or a traceback."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from pipeline.errors import Quarantined, SpecError
from pipeline.plan import InputRef, cut_units, list_inputs, plan_summary
from pipeline.sources import reader_for
from pipeline.sources.inputs import InputProblem, open_input
from pipeline.spec import SourceSpec, parse_spec
from tests.tm_testing import REPO, STDLIB


def corpus(root: Path) -> Path:
    """Real stdlib modules in a folder."""
    folder = root / "corpus"
    (folder / "sub").mkdir(parents=True)
    for name in ("json/decoder.py", "json/encoder.py", "csv.py"):
        shutil.copyfile(STDLIB / name, folder / Path(name).name)
    shutil.copyfile(STDLIB / "json/scanner.py", folder / "sub" / "scanner.py")
    return folder


def problems(folder: Path, **kw) -> dict[str, str]:
    return {Path(f.uri).name: f.problem for f in list_inputs([str(folder)], **kw) if f.problem}


def test_fifo_socket_and_links_are_set_aside_with_reasons(tmp_path):
    folder = corpus(tmp_path)
    os.mkfifo(folder / "pipe.py")
    (folder / "outside.py").symlink_to(STDLIB / "this.py")  # a real file outside the corpus
    (folder / "dangling.py").symlink_to(folder / "gone.py")
    (folder / "alias.py").symlink_to(folder / "csv.py")
    (folder / "loop").symlink_to(folder)
    found = problems(folder)
    assert found["pipe.py"] == "not a regular file (a FIFO)"
    assert found["outside.py"].startswith("symbolic link to ") and "not followed" in found["outside.py"]
    assert found["dangling.py"].startswith("dangling symbolic link")
    assert "not followed" in found["alias.py"] and "not followed" in found["loop"]
    readable = [f.uri for f in list_inputs([str(folder)]) if not f.problem]
    assert sorted(Path(u).name for u in readable) == ["csv.py", "decoder.py", "encoder.py", "scanner.py"]

    followed = problems(folder, follow_symlinks=True)
    assert "outside the source root" in followed["outside.py"], "never followed outside the source root"
    assert "alias.py" not in followed and found["pipe.py"] == followed["pipe.py"]
    assert "symbolic link loop" in followed["loop"]
    assert followed["dangling.py"].startswith("dangling symbolic link")


def test_glob_lists_problems_only_where_the_glob_could_match(tmp_path):
    folder = corpus(tmp_path)
    os.mkfifo(folder / "pipe.py")
    os.mkfifo(folder / "pipe.txt")
    (folder / ".hidden.py").write_text("x = 1\n")
    found = {Path(f.uri).name: f.problem for f in list_inputs([f"{folder}/*.py"])}
    assert found["pipe.py"] == "not a regular file (a FIFO)" and "pipe.txt" not in found
    assert found[".hidden.py"].startswith("hidden") and found["csv.py"] == "" and "scanner.py" not in found


def test_a_name_that_is_not_utf8_is_listed_printably(tmp_path):
    folder = corpus(tmp_path)
    with open(os.fsencode(folder) + b"/caf\xe9.py", "wb") as f:
        f.write((STDLIB / "this.py").read_bytes())
    listed = list_inputs([str(folder)])
    bad = [f for f in listed if f.problem]
    assert [f.uri for f in bad] == [f"{folder}/caf\\xe9.py"] and "not valid UTF-8" in bad[0].problem
    spec = parse_spec({"name": "t", "source": {"uri": str(folder), "modality": "code"},
                       "tokenizer": {"kind": "bytes"}, "sink": {"uri": str(tmp_path / "out")}})
    units = cut_units(spec, listed)
    assert "caf\\\\xe9.py" in plan_summary(units)  # `tokenmill plan` prints it, JSON-safe
    items = [i for u in units for i in reader_for("files")(u, spec.source)]
    quarantined = [i for i in items if isinstance(i, Quarantined)]
    assert len(items) == 5 and [q.stage for q in quarantined] == ["list"]


def test_a_source_of_only_unreadable_entries_says_so(tmp_path):
    (tmp_path / "c").mkdir()
    os.mkfifo(tmp_path / "c" / "pipe.txt")
    with pytest.raises(SpecError, match=r"nothing readable.*1 entries set aside.*pipe.txt: not a regular file"):
        list_inputs([str(tmp_path / "c")])


def test_a_fifo_that_replaced_a_planned_file_does_not_hang_the_reader(tmp_path):
    folder = corpus(tmp_path)
    ref = next(InputRef(f.uri, f.size, f.version) for f in list_inputs([str(folder)]) if f.uri.endswith("csv.py"))
    os.remove(ref.uri)
    os.mkfifo(ref.uri)
    outcome = []

    def read():
        with pytest.raises(InputProblem) as err, open_input(ref, SourceSpec(uri=str(folder))):
            pass
        outcome.append(str(err.value))
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(30)
    assert outcome == ["not a regular file (a FIFO)"]


def nobody_can_run() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


@pytest.mark.skipif(not nobody_can_run(), reason="needs root and setpriv to list as an unprivileged user")
def test_unreadable_folder_and_file_as_an_unprivileged_user():
    """Root reads everything, so the listing runs as `nobody` over a folder nobody may not enter."""
    root = Path(tempfile.mkdtemp(prefix="tm-perm-", dir="/tmp"))
    try:
        folder = corpus(root)
        (folder / "private").mkdir()
        shutil.copyfile(STDLIB / "this.py", folder / "private" / "this.py")
        (folder / "secret.py").write_text("print('no')\n")
        for path in (root, folder, folder / "sub"):
            path.chmod(0o755)
        for path in folder.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (folder / "private").chmod(0o700)
        (folder / "secret.py").chmod(0o600)
        script = ("import json, sys; from pipeline.plan import list_inputs; "
                  "print(json.dumps({f.uri: f.problem for f in list_inputs([sys.argv[1]])}))")
        done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                               "-c", script, str(folder)], cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HOME": "/tmp"})
        assert done.returncode == 0, done.stderr[-2000:]
        listed = {Path(k).name: v for k, v in json.loads(done.stdout).items()}
        assert listed["private"] == "cannot list folder: PermissionError: Permission denied"
        assert listed["secret.py"] == "" and listed["csv.py"] == ""  # listed; its reader says it cannot be opened
        reader = ("import sys; from pipeline.plan import make_plan; from pipeline.spec import parse_spec; "
                  "from pipeline.sources import reader_for; spec = parse_spec({'name': 't', 'source': "
                  "{'uri': sys.argv[1]}, 'tokenizer': {'kind': 'bytes'}, 'sink': {'uri': '/tmp/unused-sink'}}); "
                  "[print(getattr(i, 'reason', 'ok'), getattr(i, 'uri', None) or i.source) for u in make_plan(spec) "
                  "for i in reader_for('files')(u, spec.source)]")
        done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                               "-c", reader, str(folder)], cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HOME": "/tmp"})
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stdout.splitlines()
        assert f"cannot open: PermissionError: [Errno 13] Permission denied: '{folder}/secret.py' {folder}/secret.py" \
            in lines
        assert sum(line.startswith("ok ") for line in lines) == 4
    finally:
        shutil.rmtree(root, ignore_errors=True)
