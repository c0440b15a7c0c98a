"""Object-store inputs (moto S3 on 127.0.0.1): compressed objects, and objects changed or deleted after planning."""
from __future__ import annotations

import gzip
import json

import boto3
import pytest

from pipeline.errors import Quarantined
from pipeline.plan import make_plan
from pipeline.sources import RawRecord, reader_for
from pipeline.spec import parse_spec
from tests.tm_testing import STDLIB


@pytest.fixture
def bucket(s3_env):
    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    client.create_bucket(Bucket="changing")
    yield client
    for obj in client.list_objects_v2(Bucket="changing").get("Contents", []):
        client.delete_object(Bucket="changing", Key=obj["Key"])
    client.delete_bucket(Bucket="changing")


def read(fmt: str, uri: str):
    spec = parse_spec({"name": "t", "source": {"uri": uri, "format": fmt, "modality": "code"},
                       "tokenizer": {"kind": "bytes"}, "sink": {"uri": "s3://elsewhere/out"}})
    units = make_plan(spec)
    return units, spec, lambda: [i for u in units for i in reader_for(fmt)(u, spec.source)]


@pytest.mark.parametrize("fmt", ["files", "jsonl"])
def test_objects_changed_or_deleted_after_planning_are_quarantined(bucket, fmt):
    names = ("csv.py", "this.py", "glob.py")
    for name in names:
        text = (STDLIB / name).read_text()
        body = text.encode() if fmt == "files" else json.dumps({"text": text}).encode() + b"\n"
        bucket.put_object(Bucket="changing", Key=f"in/{name}", Body=body)
    units, spec, items = read(fmt, "s3://changing/in/")
    bucket.delete_object(Bucket="changing", Key="in/csv.py")
    old = bucket.get_object(Bucket="changing", Key="in/this.py")["Body"].read()
    bucket.put_object(Bucket="changing", Key="in/this.py", Body=old[::-1])  # same size, new etag
    got = items()
    bad = {i.uri.rsplit("/", 1)[1]: i.reason for i in got if isinstance(i, Quarantined)}
    assert bad["csv.py"] == "changed since planning: the input no longer exists"
    if fmt == "jsonl":  # opened one by one: the etag is compared
        assert bad["this.py"].startswith("changed since planning: version ")
    assert [i.source.rsplit("/", 1)[1] for i in got if isinstance(i, RawRecord)] == ["glob.py"] + \
        (["this.py"] if fmt == "files" else [])  # fetched in batches: the size matches, the etag is not read


def test_compressed_objects_are_read_through_fsspec(bucket):
    docs = [json.dumps({"text": (STDLIB / n).read_text()}).encode() + b"\n" for n in ("csv.py", "this.py")]
    bucket.put_object(Bucket="changing", Key="gz/docs.jsonl.gz", Body=gzip.compress(b"".join(docs)))
    bucket.put_object(Bucket="changing", Key="gz/csv.py.gz", Body=gzip.compress((STDLIB / "csv.py").read_bytes()))
    _, _, items = read("jsonl", "s3://changing/gz/*.jsonl.gz")
    assert [i.data for i in items()] == [(STDLIB / n).read_text() for n in ("csv.py", "this.py")]
    _, _, items = read("files", "s3://changing/gz/*.py.gz")
    assert [i.data for i in items()] == [(STDLIB / "csv.py").read_bytes()]
