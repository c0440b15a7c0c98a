"""`tokenmill submit JOB.yaml --address http://HEAD:8265`: run a job on a cluster through Ray Jobs.

The spec is validated here, written with absolute paths into a small working_dir that Ray
uploads, and run on the cluster as `tokenmill run job.yaml --address auto`; the job's logs
stream back and the exit status is the job's. Ray 2.60 has token authentication on by
default: when this machine holds a Ray auth token (~/.ray/auth_token or RAY_AUTH_TOKEN) the
client sends it (RAY_AUTH_MODE=token).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pipeline.spec import load_spec

log = logging.getLogger(__name__)

TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def _auth_env() -> None:
    if os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").exists():
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def _client(address: str):
    _auth_env()
    from ray.job_submission import JobSubmissionClient
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError or RuntimeError variants
        raise ConnectionError(f"cannot reach the Ray Jobs API at {address}: {str(exc).splitlines()[0]}") from None


def submit(job: str, address: str, pip: list[str] | None = None, follow: bool = True,
           run_args: list[str] | None = None, poll_s: float = 1.0) -> int:
    """Submit a job spec; stream its logs when `follow`; return 0 when it succeeded."""
    spec = load_spec(job)
    client = _client(address)
    with tempfile.TemporaryDirectory(prefix="tokenmill-submit-") as workdir:
        Path(workdir, "job.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
        runtime_env: dict = {"working_dir": workdir}
        if pip:
            runtime_env["pip"] = pip
        entrypoint = " ".join(["python -m pipeline.cli run job.yaml --address auto --quiet", *(run_args or [])])
        job_id = _submit_with_retry(client, entrypoint, runtime_env, spec.name)
    print(f"tokenmill: submitted {spec.name} as Ray job {job_id} to {address}", file=sys.stderr)
    if not follow:
        print(job_id)
        return 0
    status = _follow(client, job_id, poll_s)
    message = "" if status == "SUCCEEDED" else f": {client.get_job_info(job_id).message}"
    print(f"tokenmill: Ray job {job_id} {status}{message}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


def _submit_with_retry(client, entrypoint: str, runtime_env: dict, name: str, wait_s: float = 180.0) -> str:
    """Submit; a head whose job agent is still starting answers 500 'No available agent' for a while."""
    deadline = time.time() + wait_s
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata={"tokenmill_job": name})
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.time() > deadline:
                raise
            log.info("the cluster's job agent is not up yet; retrying")
            time.sleep(2.0)


def _follow(client, job_id: str, poll_s: float) -> str:
    """Print the job's log as it grows until the job ends; return its final status."""
    shown = 0
    while True:
        status = str(client.get_job_status(job_id)).split(".")[-1]
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            sys.stdout.write(logs[shown:])
            sys.stdout.flush()
            shown = len(logs)
        if status in TERMINAL:
            return status
        time.sleep(poll_s)


def cli_submit(args: argparse.Namespace) -> int:
    """`tokenmill submit JOB --address URL` (arguments in pipeline.cli)."""
    return submit(args.job, args.address, pip=args.pip, follow=not args.no_follow)
