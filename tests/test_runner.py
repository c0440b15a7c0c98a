"""The runner: work handed out breadth first, workers keep freed memory, and Ray stops fully and only when ours."""
from __future__ import annotations

import os
import shutil
import time

from pipeline.dataset.read import DatasetFolder
from tests.tm_testing import STDLIB, run_cli


def run_one_unit_per_file(tmp_path, bpe_tokenizer, ray_address, names: tuple[str, ...], workers: int) -> list:
    """`tokenmill run` on copies of these stdlib files, each larger than unit_bytes (one unit each); the ledger."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in names:
        shutil.copyfile(STDLIB / name, corpus / name)
    job = tmp_path / "job.yaml"
    job.write_text(f"name: runner\nsource: {{uri: {corpus}, modality: code, unit_bytes: 1KiB}}\n"
                   f"tokenizer: {{kind: hf, path: {bpe_tokenizer}}}\nsink: {{uri: {tmp_path / 'out'}}}\n"
                   f"resources: {{workers: {workers}}}\nreport: false\n")
    done = run_cli("run", str(job), address=ray_address)
    assert done.returncode == 0, done.stderr[-2000:]
    entries = DatasetFolder(str(tmp_path / "out")).ledger().sorted()
    assert len(entries) == len(names)
    return entries


def test_two_units_on_two_workers_use_both(tmp_path, bpe_tokenizer, ray_address):
    entries = run_one_unit_per_file(tmp_path, bpe_tokenizer, ray_address, ("textwrap.py", "difflib.py"), workers=2)
    assert len({e.run.pid for e in entries}) == 2, "both units ran on one worker"


def test_one_worker_runs_the_largest_unit_first(tmp_path, bpe_tokenizer, ray_address):
    """Units go out largest first (so the last ones to run are small and the workers end together), whatever
    their order in the index."""
    entries = run_one_unit_per_file(tmp_path, bpe_tokenizer, ray_address,
                                    ("abc.py", "difflib.py", "textwrap.py", "zipapp.py"), workers=1)
    ran = [e.n_bytes for e in sorted(entries, key=lambda e: e.run.started)]
    assert ran == sorted(ran, reverse=True), ran
    assert [e.n_bytes for e in entries] != ran  # the index's order is not the run's


def test_a_worker_keeps_freed_buffers_for_the_next_unit():
    """runner.keep_freed_memory (glibc): a freed 64 MB buffer stays in the process's heap for the next one (glibc's
    default unmaps it at once), and Arrow's buffers come from that heap. Resident memory, in a fresh process, with
    and without the setting."""
    import subprocess
    import sys
    code = ("import os, sys, numpy as np, pyarrow as pa\n"
            "from pipeline.runner import keep_freed_memory\n"
            "applied = keep_freed_memory() if sys.argv[1] == 'keep' else None\n"
            "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
            "base = rss()\n"
            "a = np.ones(64 << 20, np.uint8); del a\n"
            "numpy_kept = (rss() - base) >> 20\n"
            "base = rss()\n"
            "b = pa.allocate_buffer(48 << 20)\n"  # an Arrow buffer, from pyarrow's pool
            "np.frombuffer(b, np.uint8)[:] = 1; del b\n"
            "print(applied, numpy_kept, (rss() - base) >> 20, pa.default_memory_pool().backend_name)\n")
    kept_mib, arrow_mib, pools = {}, {}, {}
    for mode in ("keep", "default"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True).stdout
        applied, kept_mib[mode], arrow_mib[mode], pools[mode] = out.split()
        assert mode == "default" or applied == "True"
    assert int(kept_mib["keep"]) >= 60 and int(kept_mib["default"]) < 8, kept_mib
    # pyarrow allocates from glibc's heap (its system pool), not its bundled allocator: the 48 MiB Arrow buffer
    # reuses the pages numpy freed (resident memory does not grow; with pyarrow's default pool it does, by ~50)
    assert pools["keep"] == "system" and pools["default"] != "system", pools
    assert int(arrow_mib["keep"]) < 8, arrow_mib


def test_a_worker_builds_shards_without_importing_pandas():
    """runner.pyarrow_without_pandas, in a fresh process as a worker calls it: a shard table is built and written
    without pandas being imported (pyarrow's first pa.array imports it otherwise), its bytes are those of a process
    where pyarrow found pandas, and pandas and Table.to_pandas still work afterwards."""
    import subprocess
    import sys
    code = ("import sys, hashlib, numpy as np\n"
            "from pipeline.runner import pyarrow_without_pandas\n"
            "applied = pyarrow_without_pandas() if sys.argv[1] == 'without' else None\n"
            "from pipeline.shard import build_table\n"
            "from pipeline.tokenizers.base import TokenBatch\n"
            "from pipeline.sinks import files_for\n"
            "batch = TokenBatch.from_flat(np.arange(10, dtype=np.uint32), np.array([0, 4, 10]), None)\n"
            "rows = {'id': ['a', 'b'], 'source': ['s', 's'], 'modality': ['text'] * 2, 'n_bytes': [3, 5],\n"
            "        'meta': [{}, {'k': 1}]}\n"
            "table = build_table(rows, batch, 'uint16', {'x': 'y'})\n"
            "files = files_for('arrow')(table, 'shard')\n"
            "digest = hashlib.sha256(b''.join(files[k] for k in sorted(files))).hexdigest()\n"
            "imported = 'pandas' in sys.modules\n"
            "import pandas\n"
            "frame = table.to_pandas()\n"
            "print(applied, imported, len(frame), digest)\n")
    runs = {}
    for mode in ("without", "default"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True).stdout
        runs[mode] = out.split()
    applied, imported, rows, digest = runs["without"]
    assert (applied, imported, rows) == ("True", "False", "2"), runs
    assert runs["default"][1] == "True"  # pyarrow imported pandas on its own there
    assert digest == runs["default"][3]  # the same shard bytes


def test_shutdown_stops_every_process_of_the_embedded_ray_it_started():
    """runner.shutdown in a fresh process: the raylet, GCS, helpers and the actor's worker are all gone after it.

    The embedded Ray starts without a dashboard server or autoscaler monitor (runner._lean_head), runs an actor
    all the same, and Ray's own Node class is as it was afterwards."""
    import subprocess
    import sys
    code = ("import os, ray\n"
            "from ray._private.node import Node\n"
            "from pipeline import runner\n"
            "start_head = Node.start_head_processes\n"
            "runner.connect(None, 1)\n"
            "node = ray._private.worker._global_node\n"
            "kinds = sorted(node.all_processes)\n"
            "assert 'dashboard' not in kinds and 'monitor' not in kinds, kinds\n"
            "assert 'raylet' in kinds and 'gcs_server' in kinds, kinds\n"
            "assert Node.start_head_processes is start_head\n"
            "pids = [i.process.pid for infos in node.all_processes.values() for i in infos]\n"
            "@ray.remote(num_cpus=1)\n"
            "class A:\n"
            "    def pid(self): return os.getpid()\n"
            "pids.append(ray.get(A.remote().pid.remote(), timeout=60))\n"
            "runner.shutdown()\n"
            "print(ray.is_initialized(), *pids)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    initialized, *pids = out.stdout.split()
    assert initialized == "False" and len(pids) >= 3, out.stdout
    alive = []
    deadline = time.monotonic() + 10  # the actor's worker exits when its raylet goes; bounded wait
    for pid in map(int, pids):
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            alive.append(pid)
    assert not alive, f"still running after shutdown: {alive}"


def pa_default_backend() -> str:
    import pyarrow as pa
    return pa.default_memory_pool().backend_name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return not stat.read().split(") ")[-1].startswith("Z")  # a zombie has exited
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_shutdown_leaves_a_ray_it_did_not_start(ray_address):
    """A Ray already running in this process (the test session's) survives connect() then shutdown()."""
    import ray

    from pipeline import runner
    runner.connect(None, 2)  # already initialized: joins nothing, starts nothing
    runner.shutdown()
    assert ray.is_initialized()
    assert ray.get(ray.put(7), timeout=30) == 7


def test_the_dashboard_dependency_check_without_imports_agrees_with_rays():
    """ray.init's own check imports aiohttp and the rest (0.39 s on the way to the raylet's start); the one the
    lean head uses finds them without importing, and must give Ray's answer here."""
    import subprocess
    import sys
    code = ("from pipeline.runner import _dashboard_deps_found; import sys; found = _dashboard_deps_found(); "
            "print(found, 'aiohttp' in sys.modules); from ray._private.utils import get_dashboard_dependency_error; "
            "print(get_dashboard_dependency_error() is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False" and out[0] == out[2], out


def test_the_dashboard_dependencies_looked_for_are_the_ones_ray_imports():
    """DASHBOARD_DEPS copies ray.dashboard.optional_deps' list (one module per distribution): a Ray that
    imports another package there fails here, not in a node whose agent cannot start."""
    import ast
    from importlib.util import find_spec

    from pipeline.runner import DASHBOARD_DEPS
    tree = ast.parse(open(find_spec("ray.dashboard.optional_deps").origin).read())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}

    def related(a: str, b: str) -> bool:  # the same module, or one inside the other
        return a == b or a.startswith(f"{b}.") or b.startswith(f"{a}.")
    assert all(any(related(m, d) for d in DASHBOARD_DEPS) for m in imported), (sorted(imported), DASHBOARD_DEPS)
    assert all(any(related(m, d) for m in imported) for d in DASHBOARD_DEPS), (sorted(imported), DASHBOARD_DEPS)
