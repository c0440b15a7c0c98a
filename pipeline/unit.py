"""One work unit end to end, with no Ray: read -> decode -> tokenize -> stages -> write -> commit.

`UnitProcessor` holds the heavy state (tokenizer, stages) and is built once per worker;
calling it on a unit writes the shard files atomically and then the ledger entry (the
commit). Bad records are quarantined to `_errors/` and counted (empty ones apart, as n_empty); the unit still commits:
any exception while reading one input, decoding, tokenizing or staging one record sets
that record aside with the library's message. What fails the unit is storage I/O
(StorageIOError, retried by the runner) or a fault of the unit as a whole.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.decoders import decoder_for
from pipeline.errors import EMPTY, DecodeError, Quarantined, UnitFailed
from pipeline.dataset import layout
from pipeline.dataset.records import LedgerEntry, quarantine_table
from pipeline.ledger import Ledger
from pipeline.plan import WorkUnit
from pipeline.shard import build_table, public_columns, token_dtype, write_shard_files
from pipeline.sinks import files_for
from pipeline.sources import RawRecord, reader_for
from pipeline.sources.inputs import StorageIOError, is_transient
from pipeline.sources.listing import corpus_root, printable, relative_name
from pipeline.spec import TEXT_MODALITIES, JobSpec
from pipeline.storage import Storage
from pipeline.tokenizers import Tokenizer, TokenBatch
from pipeline.validate import load_tokenizer

log = logging.getLogger(__name__)

BATCH_DOCS = 1024          # documents per engine call: large batches amortise the call
BATCH_BYTES = 4 << 20      # ... or 4 MiB of input, whichever comes first
# a unit's phases, timed into its ledger entry (run.phases): reading and decoding its records (the reader and
# decoders interleave), the engine's calls, building the records and the Arrow table, the stages, serialising
# each format, writing the files atomically (fsync included), and what is left of hashing each shard once its
# write is done (the hash runs beside the write). The rest of run.seconds is the commit: the quarantine file and
# the ledger entry itself.
PHASES = ("read_decode", "encode", "build", "stages", "serialize", "hash", "write")


def source_extension(record: RawRecord) -> str:
    """The original member's extension (jpg, wav, py), for keep_source; `bin` when there is none."""
    name = (record.member or record.id).rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return ext if ext.isalnum() and len(ext) <= 8 else "bin"


def output_dtype(spec: JobSpec, tokenizer: Tokenizer) -> str:
    """Token dtype of every shard of the job, fixed at spec time."""
    if spec.stages:
        from pipeline.stages import stage_token_dtype
        return stage_token_dtype(tokenizer.vocab_size, spec.stages)
    return token_dtype(tokenizer.vocab_size)


class UnitProcessor:
    """Processes units of one job; build once per worker (loads the tokenizer once)."""

    def __init__(self, spec: JobSpec, engine: str | None = None, spec_hash: str | None = None,
                 decode_stream: Callable | None = None) -> None:
        """decode_stream: how media records are decoded (pipeline.decoders.pool.decode_stream's contract);
        None: that thread pool. The runner passes Ray tasks for `resources.decode_workers`."""
        self.spec = spec
        self.decode_stream = decode_stream
        self.tokenizer = load_tokenizer(spec.tokenizer, engine)  # a neural encoder's model loaded and checked
        self.storage = Storage(spec.sink.uri, spec.sink.storage_options)
        self.ledger = Ledger(self.storage)
        self.read = reader_for(spec.source.format)
        self.decode = decoder_for(spec.source.modality)
        self.dtype = output_dtype(spec, self.tokenizer)
        self.spec_hash = spec_hash or spec.spec_hash()
        self.metadata = {"format_version": str(layout.SHARD_FORMAT_VERSION), "tokenizer_fingerprint": self.tokenizer.fingerprint,
                         "spec_hash": self.spec_hash, "base_vocab_size": str(self.tokenizer.vocab_size)}
        self.root = corpus_root(spec.source.uris)
        self.stages = self._build_stages()
        self.needs_text = any(s.needs_text for s in spec.stages) and spec.source.modality in TEXT_MODALITIES
        self.warm_up()

    def warm_up(self) -> None:
        """Build and serialise an empty shard once, so the worker's first unit does not pay the lazy imports
        behind them (pyarrow's first `pa.array` imports pandas: ~0.3 s measured, once per process)."""
        table = build_table({"id": [], "source": [], "modality": [], "n_bytes": [], "meta": []}, TokenBatch.concat([]),
                            self.dtype, self.metadata)
        for fmt in self.spec.sink.formats:
            files_for(fmt)(table, "warm-up")

    def _build_stages(self) -> list[Any]:
        if not self.spec.stages:
            return []
        from pipeline.stages import StageContext, build_stages
        ctx = StageContext(modality=self.spec.source.modality, base_vocab_size=self.tokenizer.vocab_size,
                           eos_id=self.tokenizer.eos_id, token_bytes=self.tokenizer.token_bytes(),
                           codebook=self.tokenizer.codebook())
        return build_stages(self.spec.stages, ctx)

    def __call__(self, unit: WorkUnit, attempt: int = 1) -> LedgerEntry:
        started = time.time()
        self.phases = dict.fromkeys(PHASES, 0.0)
        clock = time.perf_counter()
        table, errors = self.tokenize_unit(unit)
        self.phases["read_decode"] = time.perf_counter() - clock - self.phases["encode"] - self.phases["build"]
        stage_stats = {}
        for stage in self.stages:
            stage_started = time.perf_counter()
            table = self._run_stage(stage, table, errors)
            stage_stats[stage.name] = {**stage.stats, "seconds": round(time.perf_counter() - stage_started, 4)}
            self.phases["stages"] += stage_stats[stage.name]["seconds"]
        table = self.relative_names(table)
        try:
            files = self.write_shards(unit, table)
            table = public_columns(table)
            if errors:
                self.write_errors(unit, errors)
            entry = self.ledger_entry(unit, table, files, errors, stage_stats, started, attempt)
            self.ledger.commit(entry)
        except Exception as exc:
            if is_transient(exc):  # the sink's storage: retried; a bug or a refusal fails the unit
                raise StorageIOError(self.storage.uri, f"write: {type(exc).__name__}: {exc}") from exc
            raise
        return entry

    def relative_names(self, table: pa.Table) -> pa.Table:
        """The `source` and `id` columns as names below the corpus root (json/decoder.py, data.jsonl@120), so
        shards do not depend on where the corpus is mounted; ledger entries and _errors/ keep the full URIs."""
        sources = table.column("source").to_pylist()
        named = {s: relative_name(s, self.root) for s in set(sources)}  # a JSONL unit: one source, 10,000s of rows
        names = [named[s] for s in sources]
        ids = [name + i[len(s):] if i.startswith(s) else i
               for i, s, name in zip(table.column("id").to_pylist(), sources, names)]
        for column, values in (("id", ids), ("source", names)):
            at = table.schema.get_field_index(column)
            table = table.set_column(at, table.schema.field(at), pa.array(values, table.schema.field(at).type))
        return table

    def _run_stage(self, stage: Any, table: pa.Table, errors: list[Quarantined]) -> pa.Table:
        """The stage on the shard; when it raises, the rows it fails on alone are quarantined
        and it runs again on the others (a stage that fails on no single row fails the unit)."""
        try:
            return stage(table)
        except Exception as exc:  # noqa: BLE001 - any stage error: find the records it comes from
            failing = {}
            for row in range(table.num_rows):
                try:
                    stage(table.slice(row, 1))
                except Exception as row_exc:  # noqa: BLE001
                    failing[row] = row_exc
            if not failing:
                raise exc
        ids, sources = table.column("id").to_pylist(), table.column("source").to_pylist()
        for row, row_exc in failing.items():
            member = ids[row][len(sources[row]):].lstrip("/") if ids[row].startswith(sources[row]) else ids[row]
            self._quarantine(errors, Quarantined(sources[row], member, f"stage {stage.name} failed: "
                                                 f"{type(row_exc).__name__}: {row_exc}", "stage"))
        keep = pa.array([row not in failing for row in range(table.num_rows)])
        return stage(table.filter(keep))

    def tokenize_unit(self, unit: WorkUnit) -> tuple[pa.Table, list[Quarantined]]:
        """Read, decode and tokenize every record of a unit into one shard table."""
        rows: dict[str, list[Any]] = {"id": [], "source": [], "modality": [], "n_bytes": [], "meta": []}
        texts: list[str] = []
        batches: list[TokenBatch] = []
        errors: list[Quarantined] = []
        pending: list[tuple[RawRecord, Any]] = []
        pending_bytes = 0
        from pipeline.decoders.pool import bind_hints, decode_stream, decode_threads
        decode = bind_hints(self.decode, self.tokenizer)
        stream = self.decode_stream or decode_stream
        for item, payload in stream(self.read(unit, self.spec.source), decode, self.spec.source,
                                    decode_threads(self.spec)):
            if isinstance(item, Quarantined):
                self._quarantine(errors, item)
                continue
            if isinstance(payload, DecodeError):
                self._quarantine(errors, Quarantined.from_error(payload))
                continue
            pending.append((item, payload))
            pending_bytes += item.n_bytes
            if len(pending) >= BATCH_DOCS or pending_bytes >= BATCH_BYTES:
                self._encode(pending, rows, texts, batches, errors)
                pending, pending_bytes = [], 0
        self._encode(pending, rows, texts, batches, errors)
        clock = time.perf_counter()
        batch = TokenBatch.concat(batches)
        rows["extra"] = {}
        if self.needs_text:
            rows["extra"]["_text"] = pa.array(texts, pa.large_string())
        if self.spec.sink.keep_source:
            rows["extra"]["_source"] = pa.array(rows.pop("_source"), pa.large_binary())
            rows["extra"]["_source_ext"] = pa.array(rows.pop("_source_ext"), pa.string())
        table = build_table(rows, batch, self.dtype, self.metadata, batch.shapes)
        self._add("build", clock)
        return table, errors

    def _add(self, phase: str, since: float) -> None:
        """Add the time since `since` to a phase of the unit being processed."""
        self.phases[phase] += time.perf_counter() - since

    def _quarantine(self, errors: list[Quarantined], item: Quarantined) -> None:
        if self.spec.on_error == "fail" and item.stage != EMPTY:
            raise UnitFailed(f"bad input (on_error: fail): {item.uri} {item.member}: {item.reason}")
        # names and library messages may carry bytes that are not UTF-8; the quarantine file holds text
        errors.append(Quarantined(printable(item.uri), printable(item.member), printable(item.reason), item.stage))

    def _encode(self, pending, rows, texts, batches, errors) -> None:
        """Tokenize a batch; when the engine rejects it, find and quarantine the bad records."""
        if not pending:
            return
        payloads = [p for _, p in pending]
        clock = time.perf_counter()
        try:
            batches.append(self._encode_checked(payloads))
            kept = pending
        except Exception:  # noqa: BLE001 - engines raise assorted types; isolate record by record
            kept = []
            for record, payload in pending:
                try:
                    batches.append(self._encode_checked([payload]))
                    kept.append((record, payload))
                except Exception as exc:  # noqa: BLE001
                    self._quarantine(errors, Quarantined(record.source, record.member,
                                                         f"tokenizer failed: {type(exc).__name__}: {exc}", "tokenize"))
        self._add("encode", clock)
        clock = time.perf_counter()
        modality = self.spec.source.modality
        for record, payload in kept:
            rows["id"].append(record.id)
            rows["source"].append(record.source)
            rows["modality"].append(modality)
            rows["n_bytes"].append(record.n_bytes)
            rows["meta"].append(record.meta)
            if isinstance(payload, str):
                texts.append(payload)
            if self.spec.sink.keep_source:
                data = record.data.encode("utf-8") if isinstance(record.data, str) else record.data
                rows.setdefault("_source", []).append(data)
                rows.setdefault("_source_ext", []).append(source_extension(record))
        self._add("build", clock)

    def _encode_checked(self, payloads: list[Any]) -> TokenBatch:
        """encode_batch, refusing ids outside the vocabulary (the shard could not hold them)."""
        batch = self.tokenizer.encode_batch(payloads)
        top = int(batch.values.max(initial=0)) if len(batch.values) else 0
        if top >= self.tokenizer.vocab_size:
            raise ValueError(f"token id {top} is outside the vocabulary ({self.tokenizer.vocab_size} ids)")
        return batch.astype(self.dtype)  # every id is below vocab_size, so it fits the shard's dtype

    def write_shards(self, unit: WorkUnit, table: pa.Table) -> dict[str, dict[str, Any]]:
        """Each format's file, then the files derived from it (a tar's .tar.idx), written atomically;
        returns path, size and sha256 of the shard file per format."""
        files = {}
        public = public_columns(table)
        for fmt in self.spec.sink.formats:
            clock = time.perf_counter()
            written = files_for(fmt)(table if fmt == "webdataset" else public, unit.shard_name)  # the tar may carry the source member
            self._add("serialize", clock)
            clock = time.perf_counter()
            files[fmt], hash_left = write_shard_files(self.storage, written, layout.shard_file(unit.shard_name, fmt))
            self.phases["write"] += time.perf_counter() - clock - hash_left
            self.phases["hash"] += hash_left  # what was left of the hash once the write was done
        return files

    def write_errors(self, unit: WorkUnit, errors: list[Quarantined]) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(quarantine_table(errors), sink)
        self.storage.write_atomic(layout.errors_file(unit.id), sink.getvalue().to_pybytes())

    def ledger_entry(self, unit: WorkUnit, table: pa.Table, files: dict[str, Any], errors: list[Quarantined],
                     stage_stats: dict[str, Any], started: float, attempt: int) -> LedgerEntry:
        tokens = table.column("tokens")
        finished = time.time()
        n_empty = sum(1 for e in errors if e.stage == EMPTY)
        return LedgerEntry(
            unit=unit.id, fingerprint=unit.fingerprint, shard=unit.shard_name,
            spec_hash=self.spec_hash, tokenizer_fingerprint=self.tokenizer.fingerprint,
            inputs=unit.to_json()["inputs"], files=files, source_root=self.root,
            n_samples=table.num_rows, n_tokens=int(pc.sum(pc.list_value_length(tokens)).as_py() or 0),
            n_bytes=int(pc.sum(table.column("n_bytes")).as_py() or 0), n_errors=len(errors) - n_empty,
            n_empty=n_empty, stage_stats=stage_stats,
            run={"host": socket.gethostname(), "pid": os.getpid(), "started": started, "finished": finished,
                 "seconds": round(finished - started, 4), "attempt": attempt, "engine": self.tokenizer.engine,
                 "phases": {k: round(v, 4) for k, v in self.phases.items()}})


def suspect_units(entries: list[LedgerEntry], units: list[WorkUnit], max_fraction: float) -> dict[str, str]:
    """Committed units that gave nothing useful -> why: no sample, or more than max_fraction of
    their records quarantined. Entries the listing set aside are not the unit's records, and a
    unit that read no record (a byte range no line starts in) is not suspect."""
    listed = {u.id: sum(1 for r in u.inputs if r.problem) for u in units}
    readable = {u.id for u in units if any(not r.problem for r in u.inputs)}
    suspect = {}
    for entry in entries:
        if entry.unit not in readable:
            continue
        bad = entry.n_errors - listed.get(entry.unit, 0)
        total = entry.n_samples + bad
        if bad <= 0:
            continue
        if entry.n_samples == 0:
            suspect[entry.unit] = f"no sample ({bad} record(s) quarantined)"
        elif bad / total > max_fraction:
            suspect[entry.unit] = (f"{bad} of {total} records quarantined, over on_error_max_fraction="
                                   f"{max_fraction:g}")
    return suspect
