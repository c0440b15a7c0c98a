"""An S3 endpoint that accepts connections and never answers: `plan` fails with the endpoint named, never hangs."""
from __future__ import annotations

import socket
import threading

from tests.tm_testing import run_cli


def test_black_holed_s3_endpoint_fails_naming_it(tmp_path, monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept_and_say_nothing() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
    job = tmp_path / "job.yaml"
    job.write_text("name: blackhole\n"  # read_timeout lowered from its default (10 s) to keep the test short
                   "source: {uri: 's3://corpus/x/*.txt', storage_options: {config_kwargs: {read_timeout: 1}}}\n"
                   f"tokenizer: {{kind: bytes}}\nsink: {{uri: {tmp_path / 'out'}}}\n")
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    try:
        done = run_cli("plan", str(job), env=env, timeout=120)  # a bound on the wait, not a timing assertion
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "ReadTimeoutError" in last and endpoint in last and "source.uri" in last, last
    assert len(held) >= 2  # it did try, and retried, before giving up
