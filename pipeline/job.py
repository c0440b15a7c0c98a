"""A job from spec to index on the driver: check, lock, plan, diff, run on Ray, clean up, index.

Everything that can be wrong with the spec or the paths fails here, before any unit runs.
The output folder is read back as untrusted input (pipeline.dataset): an invalid ledger
entry is named and its unit redone; a corrupt dataset.json is rebuilt from the ledger.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from pipeline.dataset import layout
from pipeline.dataset.read import DatasetFolder, LedgerScan
from pipeline.dataset.records import DatasetIndex, EngineChoice, LedgerEntry, RecordError, RunState
from pipeline.errors import ClusterLost, Interrupted, OutputError, SpecError, TokenizerRefused, UnitFailed
from pipeline.ledger import Ledger, build_index, write_index
from pipeline.lock import RunLease
from pipeline.plan import WorkUnit, make_plan
from pipeline.progress import Progress
from pipeline.rates import busy_span, mb_per_s
from pipeline.sinks.energon import write_energon_meta
from pipeline.spec import TEXT_MODALITIES, JobSpec
from pipeline.storage import Storage
from pipeline.tokenizers import Tokenizer
from pipeline.validate import check_job

if TYPE_CHECKING:
    from pipeline.runner import ActorPool

log = logging.getLogger(__name__)

PROBE_BYTES = 2 << 20
PROBE_UNITS = 8


@dataclass(frozen=True)
class RunOptions:
    """How to run (not what): the Ray cluster to join, the embedded Ray's CPUs, the progress display."""

    address: str | None = None
    num_cpus: int | None = None
    show_progress: bool = True
    verify: bool = False  # read every committed shard and redo those whose sha256 differs
    stop_on_sigterm: bool = False  # SIGTERM raises errors.Interrupted once Ray is up (the CLI's run)


@dataclass(frozen=True)
class RunTotals:
    """What this run's committed units hold, and its speed (steady: first unit start to last commit)."""

    n_samples: int = 0
    n_tokens: int = 0
    n_bytes: int = 0
    n_errors: int = 0
    n_empty: int = 0
    mb_s: float = 0.0
    steady_mb_s: float = 0.0
    stages: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSummary:
    """The outcome of `run_job`: what ran, what was cleaned up, the dataset's totals."""

    name: str
    output: str
    units_total: int
    units_run: int
    units_skipped: int
    units_redone: int
    units_failed: dict[str, str]
    units_removed: int
    orphans_removed: int
    retries: int
    workers_replaced: int
    engine: str
    engine_report: dict[str, Any]
    seconds: float
    totals: dict[str, int]
    run_totals: RunTotals
    ledger_problems: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    units_suspect: dict[str, str] = field(default_factory=dict)  # committed, but nothing useful (pipeline.unit)
    entries_set_aside: int = 0  # listed entries that are not read (FIFOs, links, unlistable folders), quarantined
    units_reformatted: int = 0  # committed units given new output formats from their shards (pipeline.reformat)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

def check_output(storage: Storage) -> None:
    """Fail early, with the reason, when the sink cannot be written."""
    try:
        if storage.local:
            storage.fs.makedirs(storage.root, exist_ok=True)
        else:  # never create buckets: a missing bucket is a typo far more often than an intent
            bucket = storage.root.split("/", 1)[0]
            try:
                storage.fs.info(bucket)  # FileNotFoundError: no bucket; PermissionError: wrong credentials
            except FileNotFoundError:
                raise FileNotFoundError(f"bucket {bucket!r} does not exist") from None
        storage.write_atomic(layout.WRITE_TEST, b"ok")
        storage.remove(layout.WRITE_TEST)
    except Exception as exc:  # noqa: BLE001 - every failure here means the same thing to the user
        raise OutputError(f"sink.uri: cannot write to {storage.uri}: {type(exc).__name__}: {exc}") from None


def previous_index(storage: Storage, tokenizer: Tokenizer) -> tuple[DatasetIndex | None, str | None]:
    """The output's current index if usable, and what was wrong with it; refuses to mix shards of two
    tokenizers in one dataset. A corrupt or wrongly typed dataset.json is rebuilt from the ledger."""
    index, problem = DatasetFolder.of(storage).index_or_problem()
    if problem:
        log.warning("%s: ignored; this run rebuilds it from the ledger", problem)
    if index and index.tokenizer.fingerprint not in (tokenizer.fingerprint, tokenizer.named_fingerprint):
        raise SpecError(f"tokenizer: {storage.uri} holds a dataset made with tokenizer "
                        f"{index.tokenizer.fingerprint[:12]}, this spec's is {tokenizer.fingerprint[:12]} "
                        f"({_what_changed(index.tokenizer, tokenizer)}); write to a new sink.uri or restore the "
                        "old tokenizer")
    return index, problem


def _what_changed(before, tokenizer: Tokenizer) -> str:
    """Between the dataset's tokenizer (its dataset.json description) and this one, in words."""
    if before.kind != tokenizer.kind:
        return f"kind {before.kind} -> {tokenizer.kind}"
    encoding = tokenizer.describe().get("encoding")  # a rank file recognised by its ranks (o200k_base...)
    if getattr(before, "encoding", None) != encoding:
        return f"encoding {getattr(before, 'encoding', None)} -> {encoding}"
    now = json.loads(json.dumps(tokenizer.options()))  # as dataset.json holds them
    changed = _changed_options({k: v for k, v in before.options.items() if k != "add_eos"},
                               {k: v for k, v in now.items() if k != "add_eos"})
    if changed:
        return f"options: {changed}"
    return "the bytes of its files differ: " + ", ".join(p.name for p in tokenizer.files())


def _changed_options(before: dict[str, Any], now: dict[str, Any]) -> str:
    """The options that differ, `name old -> new` (the name alone where the values are long, as a pattern)."""
    said = [f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(before.keys() | now.keys())
            if before.get(k) != now.get(k)]
    return ", ".join(s if len(s) <= 120 else s.split(" ", 1)[0] for s in said)


def probe_documents(spec: JobSpec, units: list[WorkUnit]) -> list[str]:
    """Up to PROBE_BYTES of decoded text from units spread over the plan (for engine choice).

    Bounded: records over PROBE_BYTES are set aside by the readers unread, and each unit
    gives at most PROBE_BYTES / PROBE_UNITS; a unit that fails to read is left to the run.
    """
    from pipeline.decoders import decoder_for
    from pipeline.errors import Quarantined
    from pipeline.sources import reader_for
    read, decode = reader_for(spec.source.format), decoder_for(spec.source.modality)
    limits = spec.source.limits.model_copy(update={"max_bytes": min(spec.source.limits.max_bytes, PROBE_BYTES)})
    source = spec.source.model_copy(update={"limits": limits})
    step, budget = max(1, len(units) // PROBE_UNITS), PROBE_BYTES // PROBE_UNITS
    docs: list[str] = []
    for unit in units[::step][:PROBE_UNITS]:
        taken = 0
        try:
            for item in read(unit, source):
                if isinstance(item, Quarantined):
                    continue
                try:
                    doc = decode(item, source)[:budget - taken]
                except Exception:  # noqa: BLE001 - a bad record is the run's to quarantine
                    continue
                docs.append(doc)
                taken += len(doc)
                if taken >= budget:
                    break
        except Exception as exc:  # noqa: BLE001 - storage trouble: the run retries the unit
            log.info("engine probe skipped unit %s: %s: %s", unit.id, type(exc).__name__, exc)
    return docs


def select_engine(spec: JobSpec, units: list[WorkUnit], tokenizer: Tokenizer) -> tuple[str, dict[str, Any]]:
    """The engine for the spec's tokenizer (`tokenizer`, already built) and why, probed on the units' text."""
    from pipeline.tokenizers.engines import choose_engine
    docs = probe_documents(spec, units) if spec.tokenizer.kind in ("hf", "tiktoken") and units else []
    engine, report = choose_engine(spec.tokenizer, docs, tokenizer)
    log.info("tokenizer engine: %s (%s)", engine, report["reason"])
    return engine, report


def named_engine(spec: JobSpec) -> str | None:
    """An engine the spec asks for by name that is not its kind's reference engine (text modalities only)."""
    from pipeline.tokenizers.engines import ENGINES
    asked = getattr(spec.tokenizer, "engine", "auto")
    if spec.source.modality not in TEXT_MODALITIES or spec.tokenizer.kind not in ENGINES or asked == "auto":
        return None
    return None if asked == ENGINES[spec.tokenizer.kind][0] else asked


def _probed_exact(report: dict[str, Any], engine: str) -> bool:
    """Whether the probe found the engine's ids identical to the reference's (unmeasured: not known to be)."""
    return bool(report.get("probe", {}).get(engine, {}).get("exact"))


def copy_tokenizer(storage: Storage, tokenizer: Tokenizer) -> None:
    for path in tokenizer.files():
        rel = layout.tokenizer_file(path.name)
        data = path.read_bytes()
        if storage.size(rel) != len(data) or storage.read_bytes(rel) != data:
            storage.write_atomic(rel, data)


def remove_stale_tokenizer_files(storage: Storage, tokenizer: Tokenizer) -> list[str]:
    """Delete files under OUT/tokenizer/ that the tokenizer no longer has (its file was renamed or replaced).
    Run after the new index is written: until then, a reader of the previous index may still open them."""
    keep = {path.name for path in tokenizer.files()}
    stale = []
    for name, info in storage.list_detail(layout.TOKENIZER_DIR).items():
        if name in keep or info["type"] != "file" or not layout.TOKENIZER_FILE.fullmatch(name):
            continue  # a folder or an odd name there is not a tokenizer copy: left alone
        try:
            storage.remove(layout.tokenizer_file(name))
            stale.append(name)
        except OSError as exc:  # the dataset is complete; an old copy left behind costs nothing
            log.warning("could not remove %s/%s: %s", layout.TOKENIZER_DIR, name, exc)
    return stale


def index_header(spec: JobSpec, tokenizer: Tokenizer, engine: str, dtype: str,
                 spec_hash: str | None = None) -> dict[str, Any]:
    desc = tokenizer.describe()
    desc["engine"] = engine
    return {"name": spec.name, "spec_hash": spec_hash or spec.spec_hash(), "modality": spec.source.modality,
            "tokenizer": desc, "token_dtype": dtype, "formats": list(spec.sink.formats),
            "stages": [s.model_dump(mode="json") for s in spec.stages]}


def _write_state(storage: Storage, state: RunState) -> None:
    storage.write_atomic(layout.RUN_STATE, state.to_bytes())


def run_job(spec: JobSpec, options: RunOptions = RunOptions()) -> RunSummary:
    """Run a job to a complete index; returns the run summary.

    A first run into its output (no index yet: there will be work for Ray) starts or joins Ray on this thread
    while the job is prepared on another (`_prepare`: tokenizer, plan, engine probe), which otherwise ran
    before Ray's start with one of two cores idle. On 2 cores it gains little by itself: the preparation's
    Python holds the GIL that ray.init's driver side needs (measured: docs/architecture.md).
    """
    started = time.time()
    storage = Storage(spec.sink.uri, spec.sink.storage_options)
    new_folder = storage.local and not os.path.exists(storage.root)
    try:
        first_run = _first_run(storage)
        tokenizer, units, verdict = _while_ray_starts(first_run, options, _prepare, spec, storage, first_run)
        with RunLease(storage) as lease:
            previous, index_problem = previous_index(storage, tokenizer)
            summary = _run_locked(spec, storage, tokenizer, units, previous, started, options, lease, verdict)
            if index_problem:
                summary.ledger_problems.insert(0, f"{index_problem} (rebuilt from the ledger)")
            return summary
    except SpecError:  # refused before it wrote (a model that breaks its contract): no empty folder left behind
        if new_folder:
            with contextlib.suppress(OSError):  # not empty, or gone: left as it is
                os.rmdir(storage.root)
        raise


def _first_run(storage: Storage) -> bool:
    """Whether the output has no index yet; when the sink cannot be read, not known (check_output says why)."""
    try:
        return not storage.exists(layout.INDEX)
    except Exception:  # noqa: BLE001 - check_output reports the sink's trouble with its reason
        return False


Verdict = tuple[str, dict, "EngineChoice | None"]  # the engine, its report, a new probe verdict for _engine.json


def _prepare(spec: JobSpec, storage: Storage, probe: bool) -> tuple[Tokenizer, list[WorkUnit], Verdict | None]:
    """The tokenizer (built once, and the stages checked against it, on the driver), the plan, the sink checked
    and, with `probe` (a first run, whose every unit is to do), the engine verdict over the whole plan."""
    tokenizer = check_job(spec, check_model=False)  # a model is loaded and checked by the workers only
    units = make_plan(spec)
    check_output(storage)
    if not probe or not units:
        return tokenizer, units, None
    named = named_engine(spec)
    if named:
        return tokenizer, units, _probe_once(spec, units, tokenizer, storage, named)
    return tokenizer, units, _engine_for(spec, None, tokenizer, units, storage)


ENGINE_PACKAGES = ("tokenizers", "tiktoken", "gigatoken")


def engine_versions() -> dict[str, str]:
    """The installed version of each engine package (a cached verdict holds only while these do)."""
    from importlib import metadata
    out = {}
    for name in ENGINE_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _engine_for(spec: JobSpec, previous: DatasetIndex | None, tokenizer: Tokenizer, todo: list[WorkUnit],
                storage: Storage) -> Verdict:
    """The engine for this run's units; with nothing to run, the one the index already names.

    `engine: auto` probes once per output folder, tokenizer and engine versions: the verdict is
    kept in _engine.json and reused by later (nightly) runs, which then start without the probe
    (so is the verdict on an engine the spec names, `_probe_once`).
    """
    if not todo and previous:
        engine = previous.tokenizer.engine or tokenizer.engine
        return engine, {"reason": "nothing to tokenize; the index's engine"}, None
    if spec.source.modality not in TEXT_MODALITIES:
        return tokenizer.engine, {}, None
    if getattr(spec.tokenizer, "engine", None) != "auto":  # asked for one, or a kind with a single engine
        return *select_engine(spec, todo, tokenizer), None
    return _probe_once(spec, todo, tokenizer, storage, asked=None)


def _probe_once(spec: JobSpec, units: list[WorkUnit], tokenizer: Tokenizer, storage: Storage,
                asked: str | None) -> Verdict:
    """select_engine(spec, units), or the verdict an earlier run kept in _engine.json for the same tokenizer,
    engine versions and question (auto's choice, or the engine the spec names: `asked`). A new verdict comes
    back for _run_locked to keep once it holds the output's lease."""
    versions = engine_versions()
    try:
        cached = EngineChoice.parse(storage.read_bytes(layout.ENGINE_CHOICE), layout.ENGINE_CHOICE)
    except (FileNotFoundError, RecordError):
        cached = None
    if cached and (cached.tokenizer_fingerprint, cached.versions, cached.asked) == (tokenizer.fingerprint, versions,
                                                                                    asked):
        reason = f"{cached.report.get('reason', cached.engine)} (probe verdict kept in {layout.ENGINE_CHOICE})"
        log.info("tokenizer engine: %s (%s)", cached.engine, reason)
        return cached.engine, {**cached.report, "reason": reason}, None
    engine, report = select_engine(spec, units, tokenizer)
    choice = EngineChoice(tokenizer_fingerprint=tokenizer.fingerprint, versions=versions, engine=engine,
                          report=json.loads(json.dumps(report, default=str)), asked=asked)
    return engine, report, choice


def _while_ray_starts(start_ray: bool, options: RunOptions, prepare: Callable[..., Any], *args: Any) -> Any:
    """prepare(*args); with start_ray, on a thread while this (main) thread joins or starts Ray (ray.init
    must run here: off the main thread it hung), whose start-up (~3 s for an embedded Ray on 2 cores, its
    agents mostly importing Python) then hides the preparation's time. Its errors are raised here."""
    if not start_ray:
        return prepare(*args)
    from concurrent.futures import ThreadPoolExecutor
    from pipeline import runner
    with ThreadPoolExecutor(1, thread_name_prefix="job-prepare") as pool:
        prepared = pool.submit(prepare, *args)
        try:
            runner.connect(options.address, options.num_cpus, options.stop_on_sigterm)
        finally:
            result = prepared.result()  # joined before any error of connect propagates
    return result


def _run_locked(spec: JobSpec, storage: Storage, tokenizer: Tokenizer, units: list[WorkUnit],
                previous: DatasetIndex | None, started: float, options: RunOptions, lease: RunLease,
                verdict: Verdict | None) -> RunSummary:
    """The run under the output's lease; `verdict`: the engine probed over the whole plan while Ray started."""
    ledger = Ledger(storage)
    named = named_engine(spec)
    if named:  # probed over the whole plan first: its ids decide whether the engine is in the spec hash
        engine, engine_report, new_choice = verdict or _probe_once(spec, units, tokenizer, storage, named)
        spec_hash = spec.spec_hash(None if _probed_exact(engine_report, engine) else engine)
    else:
        spec_hash = spec.spec_hash()
    todo, redo = ledger.split_plan(units, spec_hash, list(spec.sink.formats), tokenizer.fingerprint,
                                   hashes=options.verify)
    todo, redo, reformatted = _reformat_committed(ledger, spec, todo, redo)
    for unit_id, reason in sorted(redo.items()):
        log.warning("unit %s is redone: %s", unit_id, reason)
    if not named:
        if verdict is None or {u.id for u in todo} != {u.id for u in units}:  # that one was for the whole plan
            verdict = _engine_for(spec, previous, tokenizer, todo, storage)
        engine, engine_report, new_choice = verdict
    pool = _checked_workers(spec, todo, engine, spec_hash, options, tokenizer)
    if new_choice:
        storage.write_atomic(layout.ENGINE_CHOICE, new_choice.to_bytes())
    copy_tokenizer(storage, tokenizer)
    if previous is None:  # a first run: an index that says what the dataset is, so followers can start now
        write_provisional_index(spec, ledger, tokenizer, engine, units, spec_hash)
    state = RunState(state="running", name=spec.name, units_total=len(units), units_todo=len(todo),
                     started=started, host=socket.gethostname(), pid=os.getpid(), engine=engine)
    _write_state(storage, state)
    try:
        outcome = _execute(spec, todo, engine, spec_hash, options, lease, pool)
    except (UnitFailed, ClusterLost, SpecError, Interrupted) as exc:  # committed stays committed; the state says why
        _write_state(storage, state.model_copy(update={"state": "failed", "finished": time.time(),
                                                       "error": str(exc)}))
        raise
    crash_point("units-committed")
    lease.check()  # another run may hold the folder now: write nothing more
    scan = ledger.scan()  # read once after the run; the index and the cleanup share it
    from pipeline.unit import output_dtype, suspect_units
    header = index_header(spec, tokenizer, engine, output_dtype(spec, tokenizer), spec_hash)
    index = build_index(scan.entries, units, header, ledger.folder.shard_sizes())
    write_index(storage, index)  # first: the index never names a shard the cleanup below removes
    write_energon_meta(storage, index)  # .nv-meta/ lists the index's tars (pipeline.sinks.energon)
    crash_point("index-written")
    lease.check()
    removed, orphans = cleanup(ledger, units, scan)
    for name in remove_stale_tokenizer_files(storage, tokenizer):
        log.info("removed %s/%s: the tokenizer has no such file now", layout.TOKENIZER_DIR, name)
    finished = time.time()
    summary = RunSummary(
        name=spec.name, output=storage.uri, units_total=len(units), units_run=len(todo),
        units_skipped=len(units) - len(todo) - reformatted, units_redone=len(redo), units_failed=outcome.failed,
        units_reformatted=reformatted,
        units_removed=len(removed), orphans_removed=len(orphans), retries=outcome.retries,
        workers_replaced=outcome.workers_replaced, engine=engine, engine_report=engine_report,
        seconds=round(finished - started, 2), totals=index.totals.to_json(),
        run_totals=_run_totals(outcome.committed, finished - started),
        ledger_problems=sorted(ledger.problems_seen.values()), foreign=DatasetFolder.of(storage).foreign(),
        units_suspect=suspect_units(outcome.committed, todo, spec.on_error_max_fraction),
        entries_set_aside=sum(1 for u in units for r in u.inputs if r.problem))
    for path in summary.foreign:
        log.debug("left as it is (not tokenmill's): %s", path)
    done = {k: v for k, v in summary.to_json().items() if k != "engine_report"}
    _write_state(storage, state.model_copy(update={"state": "failed" if outcome.failed else "finished",
                                                   "finished": finished, "summary": done}))
    return summary


def write_provisional_index(spec: JobSpec, ledger: Ledger, tokenizer: Tokenizer, engine: str,
                            units: list[WorkUnit], spec_hash: str) -> None:
    """dataset.json before a first run's units: the header (tokenizer, dtype, formats) and the shards already
    committed (a resumed first run's), `complete: false`. A loader with `follow=True` reads it for the tokenizer
    and the ledger for the shards committed since; the end of the run rewrites it."""
    from pipeline.unit import output_dtype
    header = index_header(spec, tokenizer, engine, output_dtype(spec, tokenizer), spec_hash)
    write_index(ledger.storage, build_index(ledger.scan().entries, units, header, ledger.folder.shard_sizes()))


def _reformat_committed(ledger: Ledger, spec: JobSpec, todo: list[WorkUnit],
                        redo: dict[str, str]) -> tuple[list[WorkUnit], dict[str, str], int]:
    """Units to be redone only because the formats changed get them from their own shards (pipeline.reformat);
    returns what still runs, why each redone unit is redone, and how many were reformatted."""
    from pipeline.reformat import FORMATS_CHANGED, can_reformat, reformat_units
    formats = list(spec.sink.formats)
    if FORMATS_CHANGED not in redo.values():
        return todo, redo, 0
    entries = ledger.scan().entries
    asked = [u.id for u in todo if redo.get(u.id) == FORMATS_CHANGED
             and can_reformat(entries[u.id], formats, spec.sink.keep_source)]
    done, failed = reformat_units(ledger, entries, asked, formats)
    redo = {unit_id: failed.get(unit_id, reason) for unit_id, reason in redo.items() if unit_id not in done}
    return [u for u in todo if u.id not in set(done)], redo, len(done)


def cleanup(ledger: Ledger, units: list[WorkUnit], scan: LedgerScan) -> tuple[list[str], list[str]]:
    """The last step of a run: delete stale units, invalid entries and orphan shard files.

    Runs after the new index is written and may be cut short by a crash without harm: the
    index names only planned units' shards, and the next run finishes the deleting.
    """
    removed = ledger.remove_stale(units, scan.entries)
    crash_point("stale-removed")
    ledger.remove_invalid_entries(units, scan.problems)
    live = {unit_id: e for unit_id, e in scan.entries.items() if unit_id not in removed}
    orphans = ledger.remove_orphans(live)
    crash_point("orphans-removed")
    return removed, orphans


def _run_totals(entries: list[LedgerEntry], seconds: float) -> RunTotals:
    n_bytes = sum(e.n_bytes for e in entries)
    return RunTotals(n_samples=sum(e.n_samples for e in entries), n_tokens=sum(e.n_tokens for e in entries),
                     n_bytes=n_bytes, n_errors=sum(e.n_errors for e in entries),
                     n_empty=sum(e.n_empty for e in entries), mb_s=mb_per_s(n_bytes, seconds),
                     steady_mb_s=mb_per_s(n_bytes, busy_span(entries)), stages=_stage_totals(entries))


def _stage_totals(entries: list[LedgerEntry]) -> dict[str, dict[str, float]]:
    """Per stage: counters summed over the run's units (tokens_before/after, seconds), maxima
    taken for `max_*` figures (a per-group limit does not add up), and the units."""
    totals: dict[str, dict[str, float]] = {}
    for entry in entries:
        for stage, stats in entry.stage_stats.items():
            acc = totals.setdefault(stage, {"units": 0})
            acc["units"] += 1
            for key, value in stats.items():
                if key == "seconds":
                    acc[key] = round(acc.get(key, 0.0) + value, 4)
                elif isinstance(value, int) and not isinstance(value, bool):
                    acc[key] = max(acc.get(key, 0), value) if key.startswith("max_") else acc.get(key, 0) + value
    return totals


def _checked_workers(spec: JobSpec, todo: list[WorkUnit], engine: str, spec_hash: str, options: RunOptions,
                     tokenizer: Tokenizer) -> "ActorPool | None":
    """For a tokenizer with a model (a neural encoder), which the driver did not load: the workers, started
    now, and the first one's check of the model awaited, so that a model that breaks its contract stops the run
    (TokenizerRefused, a SpecError) before it writes anything; so does a worker whose tokenizer has another
    fingerprint than the driver's (`device: auto` that is cuda on the workers and cpu here). The driver loading
    the model too had cost a .pt2 run a second load of 4-5 s before the workers' own (docs/benchmarks.md,
    Run 13). None otherwise: the pool is made by run_units."""
    if not todo or not tokenizer.loads_model:
        return None
    from pipeline import runner
    runner.connect(options.address, options.num_cpus, options.stop_on_sigterm)
    pool = runner.ActorPool(spec, engine, runner.worker_count(spec, len(todo)), spec_hash)
    try:
        seen = pool.first_ready(spec.resources.unit_timeout, len(todo))
        if seen and seen["fingerprint"] != tokenizer.fingerprint:
            raise TokenizerRefused(workers_tokenizer_differs(tokenizer.options(), seen["options"]))
    except BaseException:
        pool.close()
        raise
    return pool


def workers_tokenizer_differs(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """What to say when the workers' tokenizer is not the one this driver fingerprinted (and so named the
    shards and decided what to redo by)."""
    if ours.get("device") != theirs.get("device"):
        return (f"tokenizer.options.device: the workers run the model on {theirs.get('device')}, and this driver, "
                f"which fingerprints the tokenizer, sees {ours.get('device')}: set tokenizer.options.device: "
                f"{theirs.get('device')}, so that the fingerprint says where the codes are made")
    changed = _changed_options(ours, theirs)
    if changed:
        return f"tokenizer: the workers' tokenizer differs from this driver's in its options: {changed}"
    return ("tokenizer.path: the workers read other bytes at the tokenizer's paths than this driver: every node "
            "must see the same files")


def _execute(spec: JobSpec, todo: list[WorkUnit], engine: str, spec_hash: str, options: RunOptions, lease: RunLease,
             pool: "ActorPool | None" = None):
    from pipeline import runner
    progress = Progress(len(todo)) if options.show_progress else None
    if not todo:
        return runner.RunOutcome()

    def committed(entry: LedgerEntry) -> None:
        lease.check()  # a run that lost its lease stops here instead of running on beside the new holder
        if progress:
            progress.commit(entry)
    runner.connect(options.address, options.num_cpus, options.stop_on_sigterm)
    return runner.run_units(spec, todo, engine, committed, progress.retry if progress else None, spec_hash, pool)


CRASH_ENV = "TOKENMILL_TEST_CRASH_AT"


def crash_point(step: str) -> None:
    """Fault injection for the end-of-run tests: the driver dies here (as by SIGKILL) when asked to."""
    if os.environ.get(CRASH_ENV) == step:
        os._exit(137)
