"""The only module that imports ray: runs units on a pool of Ray actors.

Engine choice (docs/architecture.md): a pool of long-lived actors, each holding one
tokenizer, fed units by the driver one at a time, largest first. Ray Data's streaming
executor adds ~6 s of pool start-up per dataset and hung on 2 CPUs (its actor pool took both CPUs and the reads never ran); units are
coarse (tens of MB), so a plain actor pool keeps the engine busy with nothing in between.
A dead actor is replaced and its units retried; a unit is retried at most
`resources.max_retries` times, and a unit that keeps failing is reported, never skipped.
"""
from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep a local Ray on 127.0.0.1
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray.exceptions import RayActorError, RayTaskError  # noqa: E402

from pipeline.errors import ClusterLost, Interrupted, SpecError, TokenizerRefused, UnitFailed  # noqa: E402
from pipeline.sources.inputs import StorageIOError  # noqa: E402
from pipeline.plan import WorkUnit  # noqa: E402
from pipeline.spec import JobSpec  # noqa: E402

if TYPE_CHECKING:
    from pipeline.dataset.records import LedgerEntry

log = logging.getLogger(__name__)

# One unit at a time per actor, the largest first (longest-processing-time first), so the run ends evenly:
# with two in flight, an actor's second unit was promised before its first ended, and 200 MB of code
# files in units of 104.5, 62.4, 24.5 and 8.8 MB ran 129 MB on one worker against 71 on the other.
IN_FLIGHT_PER_WORKER = 1
# after SIGTERM, an embedded Ray's raylet (which stops its workers) gets RAYLET_GRACE_S, as in Ray, and its other
# processes STOP_GRACE_S together (they exit in ~30 ms), then SIGKILL
RAYLET_GRACE_S, STOP_GRACE_S = 1.0, 0.1
M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = -3, -1  # glibc's mallopt parameters (malloc.h)
CLUSTER_CHECK_S = 5.0   # how often the driver asks the GCS whether the work can still run
GCS_ANSWER_S = 10.0     # a GCS that does not answer in this long counts as a problem
# the driver's object-store settings travel to the workers as an actor argument (never a runtime_env,
# whose contents show up in the dashboard), so `AWS_*` set where `tokenmill run` runs apply everywhere
FORWARDED_ENV_PREFIXES = ("AWS_", "FSSPEC_", "GOOGLE_APPLICATION_CREDENTIALS")
# retried with backoff: a lost worker, and storage I/O that may pass, which the unit raises as StorageIOError
# (chosen where the error happens, by its type: a decoder's OSError is a bad record, quarantined in the unit);
# anything else (a permission error, a bug) fails the unit at once
RETRYABLE_ERRORS = (StorageIOError,)
_ACTOR_LOST = (RayActorError,) + tuple(
    getattr(ray.exceptions, n) for n in ("ActorDiedError", "ActorUnavailableError", "WorkerCrashedError",
                                         "NodeDiedError", "ObjectLostError", "OwnerDiedError")
    if hasattr(ray.exceptions, n))


def keep_freed_memory() -> bool:
    """In a worker (glibc only, best effort): large buffers come from the heap and stay there when freed, so a
    unit's token arrays and shard bytes reuse the last unit's pages instead of being mapped and faulted in
    afresh (by default glibc maps each buffer over its threshold on its own and unmaps it when freed). Measured:
    26 MB units in one process, 78-79 -> 105-112 MB/s (docs/benchmarks.md). A worker's resident memory stays at
    its largest unit's peak, which the unit size bounds. Returns whether glibc took both settings.

    pyarrow's buffers (Arrow columns, the IPC shard being written) then come from that same heap: its system
    pool, instead of its bundled mimalloc, which hands large freed buffers back to the OS. `tokenmill run`
    with gigatoken, three runs each way, alternating: 210 MB of JSONL 109-127 -> 157-185 MB/s, 200 MB of code
    files 92-123 -> 146-169 MB/s (jemalloc, for the code: 115-138)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        applied = libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    except (OSError, AttributeError):  # not glibc: the allocator's defaults stand
        return False
    if applied:
        import pyarrow as pa
        pa.set_memory_pool(pa.system_memory_pool())
    return applied


class _PandasLeftOut:
    """A meta path finder under which `import pandas` fails (pyarrow_without_pandas)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] == "pandas":
            raise ModuleNotFoundError("pandas is left out of pyarrow's checks in a tokenmill worker", name=name)
        return None


def pyarrow_without_pandas() -> bool:
    """In a worker: pyarrow's first `pa.array` (any array, numpy's too) imports pandas when it is installed, to
    tell pandas objects apart, and keeps that answer for the process: 0.36 s of each worker's start on 2 cores
    (its warm-up), paid by both workers at once. A worker never hands pyarrow a pandas object, so pyarrow asks
    once here, while pandas cannot be imported, and keeps "no pandas". pandas itself stays importable and
    Table.to_pandas still works (it imports pandas by itself); only pyarrow's recognition of pandas objects
    passed to pa.array is off. Returns whether it applied: not where pandas is imported already (pandas absent
    from sys.modules means pyarrow has not asked yet, or asked and found none, and asking again changes nothing)."""
    import sys
    if "pandas" in sys.modules:
        return False
    finder = _PandasLeftOut()
    sys.meta_path.insert(0, finder)
    try:
        import pyarrow as pa
        pa.array([0])
    finally:
        sys.meta_path.remove(finder)
    return True


@ray.remote
class UnitWorker:
    """Holds one UnitProcessor (tokenizer loaded once) and runs units on it."""

    def __init__(self, spec: JobSpec, engine: str | None, spec_hash: str | None, threads: int,
                 env: dict[str, str], decode_tasks: int = 0) -> None:
        os.environ.update(env)
        os.environ["RAYON_NUM_THREADS"] = str(threads)
        pyarrow_without_pandas()
        keep_freed_memory()
        from pipeline.unit import UnitProcessor
        stream = partial(decode_in_tasks, tasks=decode_tasks) if decode_tasks else None
        self.refused: TokenizerRefused | None = None  # ready() and run() raise it: the driver stops the run
        try:
            self.processor = UnitProcessor(spec, engine, spec_hash, decode_stream=stream)
        except SpecError as exc:  # the tokenizer (a neural encoder's model, checked here) is refused
            self.refused = TokenizerRefused(str(exc))
            return
        # what is alive now (modules, the tokenizer) is left out of every later garbage collection: in a unit of
        # 2,350 files its ledger entry's validation took 83 ms of collections over it, 4 ms after this; the
        # unit 0.19-0.23 -> 0.16-0.17 s
        gc.freeze()

    def ready(self) -> dict[str, Any]:
        """The tokenizer as this worker built and checked it, its fingerprint and options (the driver compares
        them with its own); raises TokenizerRefused when it was refused."""
        if self.refused:
            raise self.refused
        tokenizer = self.processor.tokenizer
        return {"fingerprint": tokenizer.fingerprint, "options": tokenizer.options()}

    def run(self, unit: WorkUnit, attempt: int) -> "LedgerEntry":
        """Run the unit to its commit. The driver gets the ledger entry without its inputs (the committed file
        has them; the driver counts): an entry of 3,964 files took 14 ms to pickle here and 8-49 ms to unpickle
        on the driver, which shares the CPUs with the workers."""
        if self.refused:
            raise self.refused
        return self.processor(unit, attempt).model_copy(update={"inputs": []})

    def pid(self) -> int:
        return os.getpid()


_DECODER_LOST = _ACTOR_LOST + tuple(getattr(ray.exceptions, n) for n in ("OutOfMemoryError",)
                                    if hasattr(ray.exceptions, n))  # Ray's memory monitor killed the task
DECODE_BATCH = 32               # media records per decode task: amortises the task's ~1 ms round trip
DECODE_BATCH_BYTES = 64 << 20   # ... or this much of their input, whichever comes first
DECODE_WAIT_S = 300.0           # a decode task not done in this long: no CPU is free to run it


@ray.remote(num_cpus=1, max_retries=0)  # a batch whose process died is retried here, record by record
def _decode_batch(decode: Callable, records: list, source: Any) -> list[tuple[Any, dict]]:
    """In a Ray worker process: (payload or DecodeError, the meta the decoder wrote) per record."""
    from pipeline.decoders.pool import safe_decode
    return [(safe_decode(decode, record, source), record.meta) for record in records]


def decode_in_tasks(items: Iterable, decode: Callable, source: Any, threads: int, tasks: int) -> Iterator[tuple]:
    """pipeline.decoders.pool.decode_stream's contract ((item, payload or DecodeError) in input order), with
    the decoding in Ray tasks of DECODE_BATCH records, `tasks` of them in flight: processes on the CPUs the
    workers leave free, so decoding scales past what the GIL of one worker allows (docs/architecture.md,
    "Where decoding runs"). The arrays come back through the object store. A batch whose process died (a
    decoder crash) is decoded again record by record, and a record that kills its process alone is
    quarantined; its neighbours are not. `threads` is the thread pool's argument, unused here."""
    window: deque[tuple[list, list, Any]] = deque()
    batch: list = []
    size = 0
    for item in items:
        batch.append(item)
        size += getattr(item, "n_bytes", 0)
        if len(batch) >= DECODE_BATCH or size >= DECODE_BATCH_BYTES:
            # at most `tasks` batches in flight: the oldest one's results are collected before the next is sent,
            # and handed to the encoder after, so `tasks` batches decode while it encodes
            ready = list(_decoded(decode, source, *window.popleft())) if len(window) >= tasks else []
            window.append(_submit_decode(decode, batch, source))
            batch, size = [], 0
            yield from ready
    if batch:
        window.append(_submit_decode(decode, batch, source))
    while window:
        yield from _decoded(decode, source, *window.popleft())


def _submit_decode(decode: Callable, batch: list, source: Any) -> tuple[list, list, Any]:
    """(the batch, its records to decode, the task decoding them or None); Quarantined items ride along."""
    from pipeline.errors import Quarantined
    records = [item for item in batch if not isinstance(item, Quarantined)]
    return batch, records, _decode_batch.remote(decode, records, source) if records else None


def _decoded(decode: Callable, source: Any, batch: list, records: list, ref: Any) -> Iterator[tuple]:
    from pipeline.errors import Quarantined
    results = iter(_wait_decoded(ref, decode, source, records) if ref is not None else [])
    for item in batch:
        if isinstance(item, Quarantined):
            yield item, None
            continue
        payload, meta = next(results)
        item.meta.update(meta)  # what the decoder learnt (width, sample rate, codec) goes into the shard's meta
        yield item, payload


def _wait_decoded(ref: Any, decode: Callable, source: Any, records: list) -> list[tuple[Any, dict]]:
    """A batch's results; when its process died, each record again in a task of its own."""
    from pipeline.errors import DecodeError
    try:
        return _get_decoded(ref)
    except _DECODER_LOST as exc:
        log.warning("a decode task died (%s): decoding its %d records one by one", type(exc).__name__, len(records))
    out = []
    for record, single in [(r, _decode_batch.remote(decode, [r], source)) for r in records]:
        try:
            out.extend(_get_decoded(single))
        except _DECODER_LOST as exc:
            out.append((DecodeError(record.source, record.member, f"the decoder's process died on this record: "
                                    f"{type(exc).__name__}"), {}))
    return out


def _get_decoded(ref: Any) -> list[tuple[Any, dict]]:
    """A decode task's results. Its records' own errors are in them (safe_decode); a task that raised anyway
    (its arguments did not unpickle, a BaseException) is no record's fault: the unit fails, with the error."""
    try:
        return ray.get(ref, timeout=DECODE_WAIT_S)
    except RayTaskError as exc:
        raise RuntimeError(f"a decode task failed: {exc}") from None
    except ray.exceptions.GetTimeoutError:
        ray.cancel(ref, force=True)
        raise RuntimeError(f"a decode task did not finish in {DECODE_WAIT_S:g} s: either no CPU beside the workers' "
                           f"was free to run it (lower workers or cpus_per_worker), or {DECODE_BATCH} of these records "
                           "take longer to decode (long videos); or set decode_workers: 0 (decode in threads inside "
                           "each worker)") from None


def decode_tasks_per_worker(spec: JobSpec, n_workers: int) -> int:
    """Decode tasks in flight per worker for resources.decode_workers (0: threads in the worker). `auto`: the
    cluster's CPUs the workers leave free, shared; a number: that many, shared. Refused when no CPU is free."""
    asked = spec.resources.decode_workers
    if not asked:
        return 0
    free = int(ray.cluster_resources().get("CPU", 0) - n_workers * spec.resources.cpus_per_worker)
    if free < 1:
        if asked == "auto":
            return 0
        raise SpecError(f"resources.decode_workers: {asked} needs CPUs beside the workers', but the cluster's "
                        f"{ray.cluster_resources().get('CPU', 0):g} CPUs all go to {n_workers} worker(s) x "
                        f"{spec.resources.cpus_per_worker:g}; lower workers or cpus_per_worker, or set "
                        "decode_workers: 0 (threads inside each worker)")
    total = free if asked == "auto" else int(asked)
    return max(1, total // n_workers)


@dataclass
class RunOutcome:
    """What the actor pool did: committed entries, retries and units that failed for good."""

    committed: list["LedgerEntry"] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    workers_replaced: int = 0


def connect(address: str | None, num_cpus: int | None = None, stop_on_sigterm: bool = False) -> None:
    """Join a cluster at `address`, or start an embedded local Ray on 127.0.0.1; `stop_on_sigterm` (the CLI):
    then SIGTERM raises Interrupted (_stop_on_sigterm says why)."""
    if ray.is_initialized():
        return
    if address:
        _check_reachable(address)
        _check_auth(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConnectionError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        _hold_ray("cluster")
    else:
        _start_embedded(num_cpus)
    if stop_on_sigterm:
        _stop_on_sigterm()


def _stop_on_sigterm() -> None:
    """SIGTERM raises Interrupted in the main thread, so that the run writes why it stopped, releases its lease
    and stops the Ray it started. Ray's driver otherwise dies at once with a stack dump from its own handler
    (`*** SIGTERM received ... PC: @ ...`), which ray.init installs: so this is set after it. A second SIGTERM
    kills at once."""
    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Interrupted(f"stopped by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, stop)


def _start_embedded(num_cpus: int | None) -> None:
    """A new local Ray on 127.0.0.1 for this process alone."""
    # address="local": always a new embedded Ray, even when another Ray runs on this machine. Its
    # token-auth notice is not the user's business: it listens on 127.0.0.1 and lives for one run
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    with _lean_head():
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 logging_level=logging.WARNING, _node_ip_address="127.0.0.1")
    _hold_ray("embedded")


@contextmanager
def _lean_head() -> Iterator[None]:
    """Start an embedded Ray's head without its dashboard server and autoscaler monitor.

    A Ray that lives for one run in this process serves no dashboard, job submissions or autoscaling.
    Even with include_dashboard=False, ray.init still starts the dashboard's server (for job submission
    and usage stats) and waits for it before it starts the raylet. The monitor is one more Python
    process starting on the same cores. ray.init took 3.1-3.2 s without them against 4.3-4.4 s with
    them (2 cores, alternating). When Ray's Node no longer looks as expected, Ray starts as it always does.
    """
    from ray._private import node as ray_node
    start_head = getattr(ray_node.Node, "start_head_processes", None)
    if start_head is None or not hasattr(ray_node.Node, "start_api_server"):
        yield
        return

    def lean_start_head(node: Any) -> None:
        node._ray_params.no_monitor = True
        node.start_api_server = lambda *args, **kwargs: None  # this node only; its dashboard URL stays None
        try:
            start_head(node)
        finally:
            del node.start_api_server

    ray_node.Node.start_head_processes = lean_start_head
    from ray._private import utils as ray_utils
    dependency_error = ray_utils.get_dashboard_dependency_error
    ray_utils.get_dashboard_dependency_error = lambda: None if _dashboard_deps_found() else dependency_error()
    try:
        yield
    finally:
        ray_node.Node.start_head_processes = start_head
        ray_utils.get_dashboard_dependency_error = dependency_error


# what ray.dashboard.optional_deps imports, one module per distribution
DASHBOARD_DEPS = ("aiohttp", "aiohttp_cors", "grpc", "opencensus", "opentelemetry.exporter.prometheus",
                  "opentelemetry.proto", "prometheus_client", "pydantic")


def _dashboard_deps_found() -> bool:
    """Whether the dashboard agent's dependencies are installed, found without importing them.

    Before it starts the raylet, ray.init asks whether they are (to start the node's dashboard agent in full or
    minimal mode) by importing them: aiohttp, opentelemetry and the rest, 0.39 s of the driver's Python on the
    way to the raylet's start, and slower still while the job is prepared on another thread (job._prepare).
    When one is not found, Ray's own check runs and gives its answer."""
    from importlib.util import find_spec
    try:
        return all(find_spec(name) is not None for name in DASHBOARD_DEPS)
    except (ImportError, ValueError):
        return False


_HOLDS_RAY: str | None = None  # "embedded" or "cluster" while this process holds a Ray that connect() started or joined


def _hold_ray(kind: str) -> None:
    global _HOLDS_RAY
    _HOLDS_RAY = kind


def _check_auth(address: str) -> None:
    """Say at once, with the fix, when the cluster wants Ray's auth token (ray.init would retry ~20 s)."""
    hostport = address.split("://", 1)[-1]
    if address == "auto" or address.startswith("ray://") or ":" not in hostport:
        return
    try:
        from ray._raylet import GcsClient
        GcsClient(address=hostport)
    except Exception as exc:  # noqa: BLE001 - only an authentication failure is ours to explain
        if "InvalidAuthToken" not in str(exc) and type(exc).__name__ != "AuthenticationError":
            return
        mode = os.environ.get("RAY_AUTH_MODE", "unset")
        raise ConnectionError(
            f"the Ray cluster at {address} refused this client's auth token (InvalidAuthToken; RAY_AUTH_MODE is "
            f"{mode}). It uses Ray's token authentication: run with RAY_AUTH_MODE=token and the cluster's token "
            "in ~/.ray/auth_token (or RAY_AUTH_TOKEN_PATH=<file>, or RAY_AUTH_TOKEN=<token>); "
            "`ray get-auth-token` on the head prints it") from None


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

    def __init__(self, spec: JobSpec, engine: str | None, n_workers: int, spec_hash: str | None = None) -> None:
        self.spec = spec
        self.engine, self.spec_hash = engine, spec_hash
        gpus = spec.resources.gpus_per_worker if ray.cluster_resources().get("GPU", 0) else 0
        if spec.resources.gpus_per_worker and not gpus:
            log.warning("resources.gpus_per_worker=%s but the cluster has no GPU: running on CPU",
                        spec.resources.gpus_per_worker)
        self.options = {"num_cpus": spec.resources.cpus_per_worker, "num_gpus": gpus, "max_restarts": 0}
        self.threads = max(1, int(spec.resources.cpus_per_worker))
        self.decode_tasks = decode_tasks_per_worker(spec, n_workers)
        if self.decode_tasks:
            log.info("decoding in Ray tasks: %d in flight per worker", self.decode_tasks)
        self.actors = [self._new_actor() for _ in range(n_workers)]
        self.load = [0] * n_workers
        self.order: list[deque] = [deque() for _ in range(n_workers)]  # refs in the order each actor runs them
        self.head_since = [time.monotonic()] * n_workers  # when the actor's first ref started running
        self.killed: set = set()  # actors killed for a unit timeout: their other refs are not their units' fault

    def _new_actor(self):
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
        return UnitWorker.options(**self.options).remote(self.spec, self.engine, self.spec_hash, self.threads, env,
                                                         self.decode_tasks)

    def replace(self, idx: int) -> None:
        _kill(self.actors[idx])
        self.actors[idx] = self._new_actor()
        self.load[idx] = 0
        self.order[idx] = deque()
        self.head_since[idx] = time.monotonic()

    def first_ready(self, timeout_s: float, n_units: int) -> dict[str, Any] | None:
        """Wait until one worker has built and checked its tokenizer, and raise TokenizerRefused if it refused
        it: every worker checks the same files, so the first verdict is theirs. Returns what UnitWorker.ready
        says (None when every worker was lost while it started). A worker lost while it starts
        is left to run_units, which replaces it; the wait ends with ClusterLost when no node can host a worker
        for resources.stall_timeout, or when no worker is ready after `timeout_s`."""
        pending = [actor.ready.remote() for actor in self.actors]
        watch = ClusterWatch(self.spec.resources.stall_timeout, self.spec.resources.cpus_per_worker)
        deadline = time.monotonic() + timeout_s
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in done:
                try:
                    return ray.get(ref)
                except RayTaskError as exc:
                    raise (exc.cause if isinstance(exc.cause, TokenizerRefused) else exc) from None
                except _ACTOR_LOST as exc:
                    log.warning("a worker was lost while it loaded the tokenizer (%s); it is replaced",
                                type(exc).__name__)
            watch.check(0, n_units)
            if time.monotonic() > deadline:
                raise ClusterLost(f"no worker had loaded the tokenizer after {timeout_s:g} s "
                                  "(resources.unit_timeout); see the workers' logs (docs/operations.md)")

    def close(self) -> None:
        """Kill every worker of the pool (a run that stops before its units)."""
        for actor in self.actors:
            _kill(actor)

    def finished(self, idx: int, ref: Any) -> None:
        """A ref of actor idx is done: the next one in its order starts running now."""
        if ref in self.order[idx]:
            self.order[idx].remove(ref)
            self.head_since[idx] = time.monotonic()

    def overdue(self, timeout_s: float) -> list[int]:
        """Actors whose running unit has taken longer than timeout_s."""
        now = time.monotonic()
        return [i for i, refs in enumerate(self.order) if refs and now - self.head_since[i] > timeout_s]


def _kill(actor: Any) -> None:
    """Kill a worker; one already gone is no error."""
    try:
        ray.kill(actor)
    except Exception:  # noqa: BLE001 - the actor may already be gone
        pass


def run_units(spec: JobSpec, units: list[WorkUnit], engine: str | None,
              on_commit: Callable[[dict[str, Any]], None] | None = None,
              on_retry: Callable[[WorkUnit, str], None] | None = None, spec_hash: str | None = None,
              pool: ActorPool | None = None) -> RunOutcome:
    """Run every unit to a commit (or a reported failure) on a Ray actor pool (`pool`: one the job started
    already, else a new one); `spec_hash`: the one the job computed (with a named inexact engine in it), else
    the spec's own."""
    outcome = RunOutcome()
    if not units:
        return outcome
    pool = pool or ActorPool(spec, engine, worker_count(spec, len(units)), spec_hash)
    queue: deque[tuple[WorkUnit, int]] = deque((u, 1) for u in sorted(units, key=lambda u: -u.n_bytes))
    inflight: dict[Any, tuple[WorkUnit, int, int, Any]] = {}
    watch = ClusterWatch(spec.resources.stall_timeout, spec.resources.cpus_per_worker)
    timed_out: dict[Any, str] = {}  # refs whose unit ran past unit_timeout -> the message
    while queue or inflight:
        _submit(pool, queue, inflight)
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
        for ref in ready:
            unit, idx, attempt, actor = inflight.pop(ref)
            if pool.actors[idx] is actor:
                pool.load[idx] -= 1
                pool.finished(idx, ref)
            error = _result(ref, outcome, on_commit)
            if error is None:
                continue
            lost, message, retryable = error
            if lost and pool.actors[idx] is actor:
                pool.replace(idx)
                outcome.workers_replaced += 1
            if ref in timed_out:
                message = timed_out.pop(ref)
            elif lost and actor in pool.killed:  # queued behind a unit that timed out: not its fault
                queue.append((unit, attempt))
                continue
            _retry_or_fail(spec, unit, attempt, retryable, message, queue, outcome, on_retry)
        _kill_overdue(pool, spec.resources.unit_timeout, inflight, timed_out)
        watch.check(len(outcome.committed), len(units))
    return outcome


def _kill_overdue(pool: ActorPool, timeout_s: float, inflight: dict, timed_out: dict) -> None:
    """Kill the worker of a unit that ran past resources.unit_timeout; its refs come back as lost."""
    for idx in pool.overdue(timeout_s):
        head = pool.order[idx][0]
        unit = inflight[head][0] if head in inflight else None
        timed_out[head] = (f"unit timeout: still running after {timeout_s:g} s (resources.unit_timeout); "
                           "its worker was killed")
        log.warning("unit %s ran past resources.unit_timeout (%g s): killing its worker",
                    unit.id if unit else "?", timeout_s)
        pool.killed.add(pool.actors[idx])
        _kill(pool.actors[idx])
        pool.order[idx] = deque()  # nothing more is timed on this actor; it is replaced when its refs fail
        pool.head_since[idx] = float("inf")


class ClusterWatch:
    """Notices when the work can no longer progress: no alive node, or none that can host a worker.

    Ray does not fail a `ray.wait` on actors whose node died (the embedded Ray's raylet exits
    with its dashboard agent, and the retried actors can never be placed), so the driver asks
    the GCS itself every CLUSTER_CHECK_S and gives up when a problem lasts stall_timeout.
    """

    def __init__(self, stall_timeout_s: float, cpus_per_worker: float) -> None:
        self.stall_timeout_s, self.cpus = stall_timeout_s, cpus_per_worker
        self.checked = time.monotonic()
        self.since: float | None = None

    def check(self, committed: int, total: int) -> None:
        now = time.monotonic()
        if now - self.checked < CLUSTER_CHECK_S:
            return
        self.checked = now
        problem = cluster_problem(self.cpus)
        if problem is None:
            self.since = None
            return
        self.since = self.since or now
        log.warning("%s (for %.0f s; the run stops after %g s)", problem, now - self.since, self.stall_timeout_s)
        if now - self.since >= self.stall_timeout_s:
            raise ClusterLost(f"{problem}; rerun the same command to resume: {committed} of {total} units "
                              "of this run are committed")


def cluster_problem(cpus_per_worker: float) -> str | None:
    """Why no worker can run now (no alive node, too few CPUs, a silent GCS), or None."""
    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            answer["nodes"] = ray.nodes()
        except Exception as exc:  # noqa: BLE001 - any failure to answer is the finding
            answer["error"] = f"{type(exc).__name__}: {exc}"
    thread = threading.Thread(target=ask, name="tokenmill-cluster-check", daemon=True)
    thread.start()
    thread.join(GCS_ANSWER_S)
    if "nodes" not in answer:
        return f"the Ray cluster does not answer ({answer.get('error', f'no reply in {GCS_ANSWER_S:g} s')})"
    alive = [n for n in answer["nodes"] if n.get("Alive")]
    if not alive:
        return "the Ray node running this job died (raylet exited), and no other node is alive"
    cpus = max((n.get("Resources", {}).get("CPU", 0) for n in alive), default=0)
    if cpus < cpus_per_worker:
        return f"no alive Ray node has {cpus_per_worker:g} CPU for a worker (the largest has {cpus:g})"
    return None


def _submit(pool: ActorPool, queue: deque, inflight: dict) -> None:
    """Hand out queued units breadth first: always to the least loaded actor, so two units on two
    workers run side by side instead of one after the other on the first."""
    while queue:
        idx = min(range(len(pool.actors)), key=lambda i: pool.load[i])
        if pool.load[idx] >= IN_FLIGHT_PER_WORKER:
            return
        unit, attempt = queue.popleft()
        actor = pool.actors[idx]
        ref = actor.run.remote(unit, attempt)
        inflight[ref] = (unit, idx, attempt, actor)
        if not pool.order[idx]:
            pool.head_since[idx] = time.monotonic()
        pool.order[idx].append(ref)
        pool.load[idx] += 1


def _result(ref, outcome: RunOutcome, on_commit) -> tuple[bool, str, bool] | None:
    """None when the unit committed; else (worker lost?, error message, worth a retry?)."""
    try:
        entry = ray.get(ref)
    except _ACTOR_LOST as exc:
        return True, f"worker lost: {type(exc).__name__}", True
    except RayTaskError as exc:
        cause = exc.cause if exc.cause is not None else exc
        if isinstance(cause, (UnitFailed, TokenizerRefused)):
            raise cause
        return False, f"{type(cause).__name__}: {cause}", isinstance(cause, RETRYABLE_ERRORS)
    outcome.committed.append(entry)
    if on_commit:
        on_commit(entry)
    return None


def _retry_or_fail(spec: JobSpec, unit: WorkUnit, attempt: int, retryable: bool, message: str,
                   queue: deque, outcome: RunOutcome, on_retry) -> None:
    if retryable and attempt <= spec.resources.max_retries:
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
    """Leave the cluster, or stop the embedded Ray, that connect() joined or started; a Ray someone else
    started in this process (a test session's) is left alone.

    Called when a command is done rather than from Ray's exit hook, which first sleeps 0.5 s for log lines.
    ray.shutdown stops an embedded Ray's processes one at a time and gives each 1 s after SIGTERM; its
    autoscaler monitor ignores SIGTERM, so that second was always spent (shutdown 1.35-1.38 s measured, 2.0 s
    after the script's last line from the exit hook). Here the raylet stops first, as in Ray (it stops its
    workers), then the rest get SIGTERM together and SIGKILL after STOP_GRACE_S: 0.4 s for the whole shutdown.
    """
    global _HOLDS_RAY
    held, _HOLDS_RAY = _HOLDS_RAY, None
    if not held or not ray.is_initialized():
        return
    node = getattr(ray._private.worker, "_global_node", None)
    if held == "embedded" and isinstance(getattr(node, "all_processes", None), dict):
        node.kill_all_processes = lambda *args, **kwargs: _stop_together(node)
    ray.shutdown()


def _stop_together(node: Any) -> None:
    """Stop a Ray node's processes: the raylet, then every other one at once, each reaped within a bound."""
    raylet = ray._private.ray_constants.PROCESS_TYPE_RAYLET
    for group, grace_s in (([raylet], RAYLET_GRACE_S), ([t for t in node.all_processes if t != raylet], STOP_GRACE_S)):
        processes = [info.process for t in group for info in node.all_processes.pop(t, [])]
        for proc in processes:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace_s
        for proc in processes:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:  # stuck in the kernel (D state); it dies with its syscall
                    log.warning("Ray process %d did not exit after SIGKILL", proc.pid)
