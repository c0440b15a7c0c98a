"""The only module that imports ray: runs units on a pool of Ray actors.

Engine choice (docs/architecture.md): a pool of long-lived actors, each holding one
tokenizer, fed units by the driver with two in flight per actor. Ray Data's streaming
executor adds ~6 s of pool start-up per dataset and hung on 2 CPUs (its actor pool took both CPUs and the reads never ran); units are
coarse (tens of MB), so a plain actor pool keeps the engine busy with nothing in between.
A dead actor is replaced and its units retried; a unit is retried at most
`resources.max_retries` times, and a unit that keeps failing is reported, never skipped.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep a local Ray on 127.0.0.1
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray.exceptions import RayActorError, RayTaskError  # noqa: E402

from pipeline.errors import UnitFailed  # noqa: E402
from pipeline.plan import WorkUnit  # noqa: E402
from pipeline.spec import JobSpec  # noqa: E402

if TYPE_CHECKING:
    from pipeline.dataset.records import LedgerEntry

log = logging.getLogger(__name__)

IN_FLIGHT_PER_WORKER = 2
# the driver's object-store settings travel to the workers as an actor argument (never a runtime_env,
# whose contents show up in the dashboard), so `AWS_*` set where `tokenmill run` runs apply everywhere
FORWARDED_ENV_PREFIXES = ("AWS_", "FSSPEC_", "GOOGLE_APPLICATION_CREDENTIALS")
# retried with backoff; anything else (a missing file, a permission error, a bug) fails the unit at once
TRANSIENT_ERROR_NAMES = {"OSError", "IOError", "ConnectionError", "ConnectionRefusedError", "ConnectionResetError",
                         "TimeoutError", "BrokenPipeError", "ClientConnectorError", "ServerDisconnectedError"}
_ACTOR_LOST = (RayActorError,) + tuple(
    getattr(ray.exceptions, n) for n in ("ActorDiedError", "ActorUnavailableError", "WorkerCrashedError",
                                         "NodeDiedError", "ObjectLostError", "OwnerDiedError")
    if hasattr(ray.exceptions, n))


@ray.remote
class UnitWorker:
    """Holds one UnitProcessor (tokenizer loaded once) and runs units on it."""

    def __init__(self, spec: JobSpec, engine: str | None, threads: int, env: dict[str, str]) -> None:
        os.environ.update(env)
        os.environ["RAYON_NUM_THREADS"] = str(threads)
        from pipeline.unit import UnitProcessor
        self.processor = UnitProcessor(spec, engine)

    def run(self, unit: WorkUnit, attempt: int) -> dict[str, Any]:
        return self.processor(unit, attempt)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class RunOutcome:
    """What the actor pool did: committed entries, retries and units that failed for good."""

    committed: list["LedgerEntry"] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    workers_replaced: int = 0


def connect(address: str | None, num_cpus: int | None = None) -> None:
    """Join a cluster at `address`, or start an embedded local Ray on 127.0.0.1."""
    if ray.is_initialized():
        return
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConnectionError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        return
    # address="local": always a new embedded Ray, even when another Ray runs on this machine
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
             logging_level=logging.WARNING, _node_ip_address="127.0.0.1")


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at a host:port address."""
    import socket
    hostport = address.split("://", 1)[-1]
    if address == "auto" or ":" not in hostport:
        return
    host, port = hostport.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {exc}") from None


def worker_count(spec: JobSpec, n_units: int) -> int:
    """resources.workers, or for `auto` as many as the cluster's CPUs (GPUs) allow."""
    if spec.resources.workers != "auto":
        return max(1, min(int(spec.resources.workers), max(n_units, 1)))
    res = ray.cluster_resources()
    n = int(res.get("CPU", 1) // spec.resources.cpus_per_worker)
    if spec.resources.gpus_per_worker:
        n = min(n, int(res.get("GPU", 0) // spec.resources.gpus_per_worker)) or n
    return max(1, min(n, max(n_units, 1)))


class ActorPool:
    """Feeds units to actors, replaces dead actors and retries their units."""

    def __init__(self, spec: JobSpec, engine: str | None, n_workers: int) -> None:
        self.spec = spec
        self.engine = engine
        gpus = spec.resources.gpus_per_worker if ray.cluster_resources().get("GPU", 0) else 0
        if spec.resources.gpus_per_worker and not gpus:
            log.warning("resources.gpus_per_worker=%s but the cluster has no GPU: running on CPU",
                        spec.resources.gpus_per_worker)
        self.options = {"num_cpus": spec.resources.cpus_per_worker, "num_gpus": gpus, "max_restarts": 0}
        self.threads = max(1, int(spec.resources.cpus_per_worker))
        self.actors = [self._new_actor() for _ in range(n_workers)]
        self.load = [0] * n_workers

    def _new_actor(self):
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
        return UnitWorker.options(**self.options).remote(self.spec, self.engine, self.threads, env)

    def replace(self, idx: int) -> None:
        try:
            ray.kill(self.actors[idx])
        except Exception:  # noqa: BLE001 - the actor may already be gone
            pass
        self.actors[idx] = self._new_actor()
        self.load[idx] = 0


def run_units(spec: JobSpec, units: list[WorkUnit], engine: str | None,
              on_commit: Callable[[dict[str, Any]], None] | None = None,
              on_retry: Callable[[WorkUnit, str], None] | None = None) -> RunOutcome:
    """Run every unit to a commit (or a reported failure) on a Ray actor pool."""
    outcome = RunOutcome()
    if not units:
        return outcome
    pool = ActorPool(spec, engine, worker_count(spec, len(units)))
    queue: deque[tuple[WorkUnit, int]] = deque((u, 1) for u in units)
    inflight: dict[Any, tuple[WorkUnit, int, int, Any]] = {}
    while queue or inflight:
        _submit(pool, queue, inflight)
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
        for ref in ready:
            unit, idx, attempt, actor = inflight.pop(ref)
            if pool.actors[idx] is actor:
                pool.load[idx] -= 1
            error = _result(ref, outcome, on_commit)
            if error is None:
                continue
            lost, message = error
            if lost and pool.actors[idx] is actor:
                pool.replace(idx)
                outcome.workers_replaced += 1
            _retry_or_fail(spec, unit, attempt, lost, message, queue, outcome, on_retry)
    return outcome


def _submit(pool: ActorPool, queue: deque, inflight: dict) -> None:
    for idx in range(len(pool.actors)):
        while queue and pool.load[idx] < IN_FLIGHT_PER_WORKER:
            unit, attempt = queue.popleft()
            actor = pool.actors[idx]
            inflight[actor.run.remote(unit, attempt)] = (unit, idx, attempt, actor)
            pool.load[idx] += 1


def _result(ref, outcome: RunOutcome, on_commit) -> tuple[bool, str] | None:
    """None when the unit committed; else (worker lost?, error message)."""
    try:
        entry = ray.get(ref)
    except _ACTOR_LOST as exc:
        return True, f"worker lost: {type(exc).__name__}"
    except RayTaskError as exc:
        cause = exc.cause if exc.cause is not None else exc
        if isinstance(cause, UnitFailed):
            raise cause
        return False, f"{type(cause).__name__}: {cause}"
    outcome.committed.append(entry)
    if on_commit:
        on_commit(entry)
    return None


def _retry_or_fail(spec: JobSpec, unit: WorkUnit, attempt: int, lost: bool, message: str,
                   queue: deque, outcome: RunOutcome, on_retry) -> None:
    transient = lost or message.split(":")[0] in TRANSIENT_ERROR_NAMES
    if transient and attempt <= spec.resources.max_retries:
        outcome.retries += 1
        log.warning("unit %s attempt %d failed (%s); retrying", unit.id, attempt, message)
        if on_retry:
            on_retry(unit, message)
        time.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
        queue.append((unit, attempt + 1))
    else:
        outcome.failed[unit.id] = message
        log.error("unit %s failed after %d attempt(s): %s", unit.id, attempt, message)


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()
