"""Units that fail are reported, never skipped in silence; bad parquet row groups are quarantined."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from tests.tm_testing import run_cli


def job(tmp_path, body: str) -> str:
    path = tmp_path / "job.yaml"
    path.write_text("name: fail\ntokenizer: {kind: bytes}\nreport: false\n" + body)
    return str(path)


def test_on_error_fail_stops_with_one_line(tmp_path, ray_address):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "good.txt").write_text("fine")
    (tmp_path / "c" / "bad.txt").write_bytes(b"\xff\xfe")
    result = run_cli("run", job(tmp_path, "source: {uri: c}\nsink: {uri: out}\non_error: fail\n"), address=ray_address)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tokenmill: failed: bad input (on_error: fail)") and "bad.txt" in last
    state = json.loads((tmp_path / "out" / "_run.json").read_text())
    assert state["state"] == "failed" and "bad.txt" in state["error"]


def test_a_unit_that_keeps_failing_is_reported(tmp_path, ray_address):
    (tmp_path / "c").mkdir()
    for i in range(3):
        (tmp_path / "c" / f"{i}.txt").write_text("x" * 100)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "shards").write_text("a file where the shard folder should be")
    result = run_cli("run", job(tmp_path, "source: {uri: c, unit_bytes: 100}\nsink: {uri: out}\n"),
                     address=ray_address)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.strip().startswith("FAILED u-")]
    assert len(failed) == 3 and all("NotADirectoryError" in line or "FileExistsError" in line for line in failed)
    index = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert index["complete"] is False and index["totals"]["n_shards"] == 0


def test_corrupt_parquet_row_group_is_quarantined(tmp_path, ray_address):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": [f"document {i} " * 20 for i in range(300)]}), path, row_group_size=100,
                   compression="none")
    meta = pq.ParquetFile(path).metadata
    col = meta.row_group(1).column(0)
    data = bytearray(path.read_bytes())
    start = col.data_page_offset
    data[start:start + 64] = b"\x00\xff" * 32  # break the second row group's page header
    path.write_bytes(bytes(data))
    result = run_cli("run", job(tmp_path, f"source: {{uri: {path}, format: parquet}}\nsink: {{uri: out}}\n"),
                     address=ray_address)
    assert result.returncode == 0, result.stderr[-2000:]
    index = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert index["totals"]["n_samples"] == 200 and index["totals"]["n_errors"] == 1
    errors = pa.concat_tables([pq.read_table(p) for p in (tmp_path / "out" / "_errors").glob("*.parquet")])
    assert errors.column("member").to_pylist() == ["row group 1"]
    assert "unreadable row group (100 rows)" in errors.column("reason")[0].as_py()


def test_only_storage_io_is_retried(ray_address):
    """Retries are chosen by where an error came from and its type: a decoder's OSError is not storage I/O."""
    import errno

    import ray

    from pipeline import runner
    from pipeline.sources.inputs import StorageIOError, is_transient

    @ray.remote
    def fail(exc):
        raise exc

    cases = [(StorageIOError("s3://bucket/key", "read: ConnectionResetError: reset by peer"), True),
             (OSError("Truncated File Read"), False),  # Pillow's, from a cut JPEG: never retried
             (PermissionError(errno.EACCES, "Permission denied"), False)]
    for exc, retryable in cases:
        lost, message, again = runner._result(fail.remote(exc), runner.RunOutcome(), None)
        assert (lost, again) == (False, retryable), message
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError()) and is_transient(OSError(errno.EIO, "x"))
    assert not is_transient(FileNotFoundError(errno.ENOENT, "gone")) and not is_transient(ValueError("bad"))
    # botocore wraps what its HTTP client did not expect; a reset while sending is worth a retry, a bug is not
    from botocore.exceptions import HTTPClientError
    assert is_transient(HTTPClientError(error=ConnectionResetError(errno.ECONNRESET, "reset by peer")))
    assert not is_transient(HTTPClientError(error=ValueError("bad"))) and not is_transient(HTTPClientError(error="x"))
