"""s3:// input and output against a real S3 server (moto, server mode, on 127.0.0.1)."""
from __future__ import annotations

import json

import boto3
import numpy as np
import pyarrow as pa
import pytest
import s3fs

from pipeline.tokenizers.text import HFTokenizer
from tests.tm_testing import STDLIB, moto_server, run_cli

SECRET = "s3cr3t-do-not-log-4711"
JOB = """name: s3-code
source: {{uri: "s3://corpus-in/code/**/*.py", format: files, modality: code, unit_bytes: 50KiB}}
tokenizer: {{kind: hf, path: {tok}}}
sink: {{uri: "{out}", formats: [arrow, webdataset]}}
resources: {{workers: 2}}
report: false
"""


@pytest.fixture
def s3(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                          aws_secret_access_key=SECRET, region_name="us-east-1")
    for bucket in ("corpus-in", "corpus-out"):
        client.create_bucket(Bucket=bucket)
    files = sorted((STDLIB / "json").glob("*.py")) + sorted((STDLIB / "email").glob("*.py"))
    for path in files:
        if path.stat().st_size:
            client.put_object(Bucket="corpus-in", Key=f"code/{path.parent.name}/{path.name}", Body=path.read_bytes())
    yield client, {**s3_env, "AWS_SECRET_ACCESS_KEY": SECRET}
    for bucket in ("corpus-in", "corpus-out"):
        for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
        client.delete_bucket(Bucket=bucket)


def test_s3_in_and_out_incremental(tmp_path, s3, bpe_tokenizer, ray_address):
    client, env = s3
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(tok=bpe_tokenizer, out="s3://corpus-out/v1"))
    first = run_cli("run", str(job), address=ray_address, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    fs = s3fs.S3FileSystem(endpoint_url=env["AWS_ENDPOINT_URL"], key="testing", secret=SECRET)
    index = json.loads(fs.cat_file("corpus-out/v1/dataset.json"))
    n_objects = len(client.list_objects_v2(Bucket="corpus-in", Prefix="code/")["Contents"])
    assert index["totals"]["n_samples"] == n_objects
    hf = HFTokenizer(str(bpe_tokenizer))
    for shard in index["shards"][:3]:
        with fs.open(f"corpus-out/v1/{shard['files']['arrow']['path']}", "rb") as f:
            table = pa.ipc.open_file(pa.BufferReader(f.read())).read_all()
        for sample_id, tokens in zip(table.column("id").to_pylist(), table.column("tokens").to_pylist()):
            key = f"code/{sample_id}"  # ids are names below the source root, s3://corpus-in/code
            body = client.get_object(Bucket="corpus-in", Key=key)["Body"].read().decode()
            assert hf.decode(np.array(tokens)) == body
    for name in ("abc.py", "heapq.py", "bisect.py"):
        client.put_object(Bucket="corpus-in", Key=f"code/json/{name}", Body=(STDLIB / name).read_bytes())
    second = run_cli("run", str(job), address=ray_address, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    line = next(x for x in second.stdout.splitlines() if "units:" in x)
    assert 1 <= int(line.split("planned, ")[1].split(" run")[0]) <= 4, line
    assert json.loads(fs.cat_file("corpus-out/v1/dataset.json"))["totals"]["n_samples"] == n_objects + 3
    # credentials appear nowhere: not in output, logs, ledger or index
    written = b"".join(fs.cat_file(p) for p in fs.find("corpus-out/v1") if p.endswith(".json"))
    assert SECRET.encode() not in written
    assert SECRET not in first.stdout + first.stderr + second.stdout + second.stderr


def test_missing_bucket_fails_with_one_line(tmp_path, s3, bpe_tokenizer, ray_address):
    _, env = s3
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(tok=bpe_tokenizer, out="s3://no-such-bucket/v1"))
    result = run_cli("run", str(job), address=ray_address, env=env)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tokenmill: error: sink.uri: cannot write to s3://no-such-bucket/v1"), last
    job.write_text(JOB.format(tok=bpe_tokenizer, out="s3://corpus-out/v1").replace("corpus-in", "missing-in"))
    result = run_cli("run", str(job), address=ray_address, env=env)
    assert result.returncode == 2 and "source.uri" in result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def s3_auth_server():
    """A moto server that checks credentials (IAM on from the first request): any key is unknown."""
    with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as endpoint:
        yield endpoint


def test_wrong_credentials_fail_with_one_line(tmp_path, s3_auth_server, bpe_tokenizer, ray_address):
    env = {"AWS_ENDPOINT_URL": s3_auth_server, "AWS_ACCESS_KEY_ID": "AKIAWRONGKEY", "AWS_SECRET_ACCESS_KEY": SECRET}
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.py").write_text("x = 1\n")
    job = tmp_path / "job.yaml"
    job.write_text(JOB.format(tok=bpe_tokenizer, out="s3://corpus-out/v1").replace("s3://corpus-in/code/**/*.py",
                                                                                   str(tmp_path / "c")))
    result = run_cli("run", str(job), address=ray_address, env=env)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tokenmill: error: sink.uri: cannot write to s3://corpus-out/v1: PermissionError"), last
    job.write_text(JOB.format(tok=bpe_tokenizer, out=str(tmp_path / "out")))
    result = run_cli("run", str(job), address=ray_address, env=env)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tokenmill: error: source.uri: cannot list s3://corpus-in/") and "PermissionError" in last
    assert SECRET not in result.stdout + result.stderr
