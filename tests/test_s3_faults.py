"""Transient S3 faults: 30% `503 SlowDown` and 10% connection resets, from a small fault-injecting proxy
in front of the real moto server on 127.0.0.1. The run still ends with shards byte-identical to a
clean run's."""
from __future__ import annotations

import http.client
import random
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import boto3
import pytest
import s3fs

from tests.tm_testing import STDLIB, run_cli

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")
JOB = """name: s3-faults
source: {{uri: "s3://faults-in/code/**/*.py", format: files, modality: code, unit_bytes: 40KiB}}
tokenizer: {{kind: hf, path: {tok}}}
sink: {{uri: "s3://faults-out/{out}", formats: [arrow, webdataset]}}
resources: {{workers: 2, max_retries: 6}}
report: false
"""


class FaultyProxy(ThreadingHTTPServer):
    """Forwards every request to `upstream`; answers 503 or resets the connection by a seeded draw."""

    daemon_threads = True

    def __init__(self, upstream: str, p_503: float, p_reset: float, seed: int = 7) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urlsplit(upstream)
        self.p_503, self.p_reset = p_503, p_reset
        self.draws = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {"forwarded": 0, "503": 0, "reset": 0}
        self.requests: list[tuple[str, str]] = []  # (method, path without the query) of each request

    def draw(self) -> str:
        with self.lock:
            x = self.draws.random()
        fault = "503" if x < self.p_503 else "reset" if x < self.p_503 + self.p_reset else "forwarded"
        with self.lock:
            self.counts[fault] += 1
        return fault

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.command, urlsplit(self.path).path))
        fault = self.server.draw()
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()  # RST: the client sees "connection reset by peer"
            self.close_connection = True
            return
        if fault == "503":
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOWDOWN)))
            self.end_headers()
            if self.command != "HEAD":  # as S3 does: a reply to HEAD has no body (one would garble the next reply)
                self.wfile.write(SLOWDOWN)
            return
        up = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        headers["Host"] = self.server.upstream.netloc
        up.request(self.command, self.path, body=body or None, headers=headers)
        reply = up.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        for key, value in reply.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        head = self.command == "HEAD"  # its Content-Length is the object's size, and it has no body
        self.send_header("Content-Length", reply.getheader("Content-Length", "0") if head else str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)
        up.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any


@pytest.fixture
def buckets(s3_env):
    client = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    for bucket in ("faults-in", "faults-out"):
        client.create_bucket(Bucket=bucket)
    for path in sorted((STDLIB / "json").glob("*.py")) + sorted((STDLIB / "email").glob("*.py")):
        if path.stat().st_size:
            client.put_object(Bucket="faults-in", Key=f"code/{path.parent.name}/{path.name}", Body=path.read_bytes())
    yield s3_env
    for bucket in ("faults-in", "faults-out"):
        for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
        client.delete_bucket(Bucket=bucket)


def _shards(env: dict, out: str) -> dict[str, bytes]:
    fs = s3fs.S3FileSystem(endpoint_url=env["AWS_ENDPOINT_URL"], key="testing", secret="testing")
    return {p.rsplit("/", 1)[-1]: fs.cat_file(p) for p in fs.ls(f"faults-out/{out}/shards")}


def test_503s_and_resets_end_byte_identical(tmp_path, buckets, bpe_tokenizer, ray_address):
    for name in ("clean", "faulty"):
        (tmp_path / f"{name}.yaml").write_text(JOB.format(tok=bpe_tokenizer, out=name))
    clean = run_cli("run", str(tmp_path / "clean.yaml"), address=ray_address, env=buckets)
    assert clean.returncode == 0, clean.stderr[-3000:]
    proxy = FaultyProxy(buckets["AWS_ENDPOINT_URL"], p_503=0.3, p_reset=0.1)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        faulty = run_cli("run", str(tmp_path / "faulty.yaml"), address=ray_address,
                         env={**buckets, "AWS_ENDPOINT_URL": proxy.url}, timeout=600)
    finally:
        proxy.shutdown()
    assert faulty.returncode == 0, faulty.stderr[-3000:]
    assert proxy.counts["503"] >= 10 and proxy.counts["reset"] >= 3, proxy.counts
    a, b = _shards(buckets, "clean"), _shards(buckets, "faulty")
    assert len(a) >= 4
    assert a == b, (_quarantined(buckets, "faulty"), faulty.stdout[-3000:])


def test_a_unit_of_files_costs_one_get_per_object(buckets, bpe_tokenizer):
    """format: files on S3: each object of a unit is fetched with one GET (s3fs's cat asks each size first, a
    HEAD: twice the requests, each one more chance of a 503), and every byte arrives."""
    from pipeline.plan import make_plan
    from pipeline.sources.files import read_files
    from pipeline.spec import parse_spec
    proxy = FaultyProxy(buckets["AWS_ENDPOINT_URL"], p_503=0, p_reset=0)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:  # the endpoint in storage_options, as a user gives it: an s3fs instance cached for moto is not reused
        spec = parse_spec({"name": "gets", "source": {"uri": "s3://faults-in/code/**/*.py", "format": "files",
                                                      "modality": "code", "unit_bytes": "40KiB",
                                                      "storage_options": {"endpoint_url": proxy.url}},
                           "tokenizer": {"kind": "hf", "path": str(bpe_tokenizer)},
                           "sink": {"uri": "s3://faults-out/g"}})
        source, units = spec.source, make_plan(spec)
        assert len(units) > 1
        proxy.requests.clear()  # the plan's listing
        records = [r for unit in units for r in read_files(unit, source)]
    finally:
        proxy.shutdown()
    objects = {f"/faults-in/{o}" for o in _keys(buckets, "faults-in")}
    assert sorted(proxy.requests) == sorted(("GET", path) for path in objects), proxy.requests
    assert {r.source.split("://", 1)[1] for r in records} == {p[1:] for p in objects}
    assert sum(len(r.data) for r in records) == sum(u.n_bytes for u in units) > 0


def _keys(env: dict, bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]


def _quarantined(env: dict, out: str) -> list[dict]:
    """The faulty run's quarantine records, for the failure message."""
    import pyarrow.parquet as pq
    fs = s3fs.S3FileSystem(endpoint_url=env["AWS_ENDPOINT_URL"], key="testing", secret="testing")
    rows = []
    for path in fs.glob(f"faults-out/{out}/_errors/**"):
        if path.endswith(".parquet"):
            with fs.open(path) as f:
                rows += pq.read_table(f).to_pylist()
    return rows


class _Garbler(socketserver.ThreadingTCPServer):
    """Answers every request with a garbled status line, as a broken proxy or load balancer may."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _GarbleHandler)


class _GarbleHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # the request's head
            pass
        self.wfile.write(b"HTTP/1.1 2O0 0K\r\nContent-Length: 0\r\n\r\n")


def test_a_garbled_status_line_is_transient():
    """The real client stack (s3fs, aiobotocore, aiohttp) against a server whose reply is not HTTP: the error it
    raises is retried as transient (pipeline.storage.is_transient), as a reset is, not reported as an answer."""
    from pipeline.storage import is_transient
    server = _Garbler()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fs = s3fs.S3FileSystem(endpoint_url=f"http://127.0.0.1:{server.server_address[1]}", key="testing",
                               secret="testing", skip_instance_cache=True,
                               config_kwargs={"retries": {"max_attempts": 1}})
        fs.retries = 1  # s3fs's own retries: the first error is the one judged
        with pytest.raises(Exception) as raised:
            fs.cat_file("bucket/key")
    finally:
        server.shutdown()
    assert is_transient(raised.value), f"{type(raised.value).__name__}: {raised.value!r}"
    chain, exc = [], raised.value  # the unparsable reply itself is what made it transient, not a reset
    while exc is not None:
        chain.append(type(exc).__name__)
        inner = getattr(exc, "kwargs", {}).get("error") if isinstance(getattr(exc, "kwargs", None), dict) else None
        exc = exc.__cause__ or inner
    assert "HttpProcessingError" in chain, chain
