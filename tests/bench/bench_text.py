"""`python tests/bench/bench_text.py` (or `tokenmill bench text` in a source checkout): each engine's raw speed, then the whole pipeline with that engine.

One process tree, two corpora of real text and code from this machine under --workdir: a
JSONL file (Python sources and /usr/share/doc, >= 100 MB by default) and a folder of Python
files (>= 100 MB; `format: files`, `modality: code`, one document per file), with a 32k
byte-level BPE trained by `tokenmill train`. (a) Raw, two ways, with as many threads as workers: every
engine encoding the documents already in memory, and every engine on the same input file
as a user would run it alone (gigatoken reads the JSONL or the files itself; the Python
engines get orjson-parsed batches, or the files read one by one). (b) Pipeline: `tokenmill run` through the CLI with N workers into
committed Arrow shards, once per engine; steady-state MB/s is the corpus's text bytes over
the span from the first unit's start to the last unit's commit, and the fixed cost is the
command's wall time minus that span (Ray start-up included). Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

log = logging.getLogger(__name__)

ENGINES = ("hf", "tiktoken", "gigatoken")
CORPUS_ROOTS = (sysconfig.get_paths()["stdlib"], "/usr/share/doc", sysconfig.get_paths()["purelib"])
SKIP_SUFFIXES = (".gz", ".xz", ".bz2", ".zip", ".png", ".jpg", ".pdf", ".svg", ".so")


def corpus_files(roots: tuple[str, ...] = CORPUS_ROOTS) -> Iterator[Path]:
    """Text-like files under each root, in a deterministic order (Python sources first)."""
    for root in roots:
        paths = sorted(Path(root).rglob("*"))
        for want_py in (True, False):
            for path in paths:
                if path.is_file() and not path.is_symlink() and (path.suffix == ".py") == want_py \
                        and not path.name.endswith(SKIP_SUFFIXES):
                    yield path


def build_corpus(target: Path, min_bytes: int) -> dict[str, int]:
    """Write real UTF-8 documents from this machine as JSONL until min_bytes of text."""
    seen: set[Path] = set()
    n_docs = n_bytes = 0
    tmp = target.with_suffix(".tmp")
    with tmp.open("w") as out:
        for path in corpus_files():
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            try:
                text = path.read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if text.strip():
                out.write(json.dumps({"text": text, "path": str(path)}) + "\n")
                n_docs += 1
                n_bytes += len(text.encode("utf-8"))
            if n_bytes >= min_bytes:
                break
    tmp.rename(target)
    return {"documents": n_docs, "bytes": n_bytes}


def prepare(workdir: Path, min_bytes: int, vocab_size: int) -> tuple[Path, Path]:
    """The corpus and its tokenizer under workdir, built (and trained) once and then reused."""
    workdir.mkdir(parents=True, exist_ok=True)
    corpus, tokenizer = workdir / "corpus.jsonl", workdir / "tokenizer" / "tokenizer.json"
    if not corpus.exists() or corpus.stat().st_size < min_bytes:
        log.info("writing a corpus of >= %d bytes to %s", min_bytes, corpus)
        log.info("corpus: %s", build_corpus(corpus, min_bytes))
    if not tokenizer.exists():
        log.info("training a %d byte-level BPE with `tokenmill train`", vocab_size)
        subprocess.run([sys.executable, "-m", "pipeline.cli", "train", "--input", str(corpus), "--format", "jsonl",
                        "--field", "text", "--vocab-size", str(vocab_size), "--output", str(tokenizer)], check=True)
    return corpus, tokenizer


def build_code_folder(target: Path, min_bytes: int) -> dict[str, int]:
    """Copy real Python sources from this machine (stdlib, then site-packages) into a folder until min_bytes."""
    tmp = target.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    n_files = n_bytes = 0
    for path in corpus_files():
        if path.suffix != ".py":
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not text.strip():
            continue
        dest = tmp / f"{n_files // 1000:03d}" / f"{n_files % 1000:03d}_{path.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(text.encode("utf-8"))
        n_files, n_bytes = n_files + 1, n_bytes + len(text.encode("utf-8"))
        if n_bytes >= min_bytes:
            break
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return {"files": n_files, "bytes": n_bytes}


def prepare_code(workdir: Path, min_bytes: int) -> Path:
    """A folder of real code files under workdir (each file one document), built once and then reused."""
    folder = workdir / "code"
    have = sum(p.stat().st_size for p in folder.rglob("*.py")) if folder.exists() else 0
    if have < min_bytes:
        log.info("copying >= %d bytes of Python sources to %s", min_bytes, folder)
        log.info("code folder: %s", build_code_folder(folder, min_bytes))
    return folder


def code_paths(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def load_docs(corpus: Path) -> list[str]:
    """The documents of a corpus: a JSONL file's `text` fields, or a folder's files."""
    if corpus.is_dir():
        return [p.read_bytes().decode("utf-8") for p in code_paths(corpus)]
    with corpus.open() as f:
        return [json.loads(line)["text"] for line in f]


def raw_speed(tokenizer_path: Path, engine: str, docs: list[str], batch_docs: int) -> tuple[dict[str, Any], list]:
    """Time the engine's own batch call over in-memory documents; returns figures and ids per batch."""
    from pipeline.tokenizers.text import HFTokenizer
    encode, flatten = HFTokenizer(str(tokenizer_path), add_eos=False, engine="hf").raw_engine(engine)
    encode(["warm up: lazy initialisation is not encoding speed"])
    outputs, seconds = [], 0.0
    for i in range(0, len(docs), batch_docs):
        start = time.perf_counter()
        out = encode(docs[i:i + batch_docs])
        seconds += time.perf_counter() - start
        outputs.append(flatten(out, None))
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    n_tokens = sum(int(b.offsets[-1]) for b in outputs)
    return {"engine": engine, "mb_s": n_bytes / seconds / 1e6, "seconds": seconds, "n_bytes": n_bytes,
            "n_tokens": n_tokens}, outputs


def raw_file_speed(tokenizer_path: Path, engine: str, corpus: Path, text_bytes: int, batch_docs: int) -> dict[str, Any]:
    """The engine on the same input, as a user would run it alone: gigatoken reads and parses the JSONL, or
    reads the code files, itself (its Rust JsonlFileSource / TextFileSource, on RAYON_NUM_THREADS threads);
    the Python engines get orjson-parsed batches of documents read line by line, or the files read one by one.
    The baseline the pipeline's steady state is held against."""
    from pipeline.tokenizers.text import HFTokenizer
    tok = HFTokenizer(str(tokenizer_path), add_eos=False, engine="hf")
    if engine == "gigatoken":
        import gigatoken
        from pipeline.tokenizers.gigatoken_engine import engine_threads, without_special_tokens
        backend = gigatoken.Tokenizer.from_json(without_special_tokens(tokenizer_path.read_bytes())).backend
        parallel = engine_threads() > 1
        backend.encode_batch(["warm up: lazy initialisation is not encoding speed"], parallel=parallel)
        start = time.perf_counter()
        source = (gigatoken.TextFileSource([str(p) for p in code_paths(corpus)]) if corpus.is_dir()
                  else gigatoken.JsonlFileSource([str(corpus)], field="text"))
        out = backend.encode_files(source, parallel=parallel)
        seconds, n_docs = time.perf_counter() - start, len(out)
    else:
        from orjson import loads
        encode, _ = tok.raw_engine(engine)
        encode(["warm up: lazy initialisation is not encoding speed"])
        start, n_docs, batch = time.perf_counter(), 0, []
        documents = ((p.read_bytes().decode("utf-8") for p in code_paths(corpus)) if corpus.is_dir()
                     else (loads(line)["text"] for line in corpus.open("rb")))
        for doc in documents:
            batch.append(doc)
            if len(batch) == batch_docs:
                encode(batch)
                n_docs, batch = n_docs + len(batch), []
        if batch:
            encode(batch)
        seconds, n_docs = time.perf_counter() - start, n_docs + len(batch)
    return {"file_mb_s": text_bytes / seconds / 1e6, "file_seconds": seconds, "file_docs": n_docs}


def mismatched_docs(batches: list, reference: list) -> int:
    """Documents whose ids differ from the reference engine's."""
    bad = 0
    for got, ref in zip(batches, reference):
        for i in range(len(ref)):
            a = got.values[got.offsets[i]:got.offsets[i + 1]]
            bad += not np.array_equal(a, ref.values[ref.offsets[i]:ref.offsets[i + 1]])
    return bad


class WorkerMemory(threading.Thread):
    """Samples the peak RSS (VmHWM) of every Ray worker process running tokenmill units."""

    def __init__(self, title: str = "ray::UnitWorker", every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.title, self.every_s = title.encode(), every_s
        self.peak_kib: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
                self._sample(pid)

    def _sample(self, pid: int) -> None:
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(self.title):
                return
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:  # the process ended between listing and reading
            return
        hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
        self.peak_kib[pid] = max(hwm, self.peak_kib.get(pid, 0))

    def stop(self, pids: set[int]) -> list[float]:
        """Peak RSS (GiB) of the given worker pids, stopping the sampler."""
        self.done.set()
        self.join()
        return sorted(round(kib / 2**20, 2) for pid, kib in self.peak_kib.items() if pid in pids)


def bench_spec(corpus: Path, tokenizer: Path, out: Path, engine: str, workers: int, unit_bytes: int | None):
    """The pipeline's job (a dict, as its YAML); unit_bytes None keeps the spec's default unit size."""
    source = ({"uri": str(corpus), "format": "files", "modality": "code"} if corpus.is_dir() else
              {"uri": str(corpus), "format": "jsonl", "field": "text", "modality": "text"})
    if unit_bytes:
        source["unit_bytes"] = unit_bytes
    return {"name": f"bench-{engine}", "report": False, "source": source,
            "tokenizer": {"kind": "hf", "path": str(tokenizer), "engine": engine},
            "sink": {"uri": str(out), "formats": ["arrow"]}, "resources": {"workers": workers}}


def run_spec(corpus: Path, tokenizer: Path, workdir: Path, engine: str, args: argparse.Namespace) -> dict[str, Any]:
    """The bench's job for one engine, with --workers and --unit-mb."""
    return bench_spec(corpus, tokenizer, workdir / f"out-{engine}", engine, args.workers,
                      int(args.unit_mb * 2**20) if args.unit_mb else None)


def bench_inputs(workdir: Path) -> tuple[Path, Path]:
    """(corpus.jsonl, tokenizer.json) that this script wrote under workdir, for the benches that reuse them."""
    corpus, tokenizer = workdir / "corpus.jsonl", workdir / "tokenizer" / "tokenizer.json"
    if not corpus.exists() or not tokenizer.exists():
        sys.exit(f"run tests/bench/bench_text.py --workdir {workdir} once first (it writes the corpus and tokenizer)")
    return corpus, tokenizer


def pipeline_speed(spec: dict[str, Any], workers: int, text_bytes: int, workdir: Path) -> dict[str, Any]:
    """`tokenmill run` through the CLI (its own embedded Ray) into a fresh output; steady-state MB/s (of text,
    as raw) from the ledger's unit times, and the fixed cost: the command's wall time minus that span."""
    import yaml
    from pipeline.dataset.read import DatasetFolder
    from pipeline.rates import busy_span
    out = Path(spec["sink"]["uri"])
    shutil.rmtree(out, ignore_errors=True)
    job, summary_file = workdir / f"{spec['name']}.yaml", workdir / f"{spec['name']}.summary.json"
    job.write_text(yaml.safe_dump(spec))
    memory = WorkerMemory()
    memory.start()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(job), "--num-cpus", str(workers),
                           "--quiet", "--summary-json", str(summary_file)], check=False)
    wall = time.perf_counter() - start
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    entries = DatasetFolder(str(out)).ledger().sorted()
    peaks = memory.stop({e.run.pid for e in entries})
    span = busy_span(entries)
    n_bytes = sum(e.n_bytes for e in entries)
    return {"engine": summary.get("engine"), "mb_s": text_bytes / span / 1e6, "steady_s": span, "wall_s": wall,
            "fixed_s": wall - span, "wall_mb_s": text_bytes / wall / 1e6, "file_mb_s": n_bytes / span / 1e6,
            "units": len(entries), "n_samples": sum(e.n_samples for e in entries),
            "n_tokens": sum(e.n_tokens for e in entries), "exit_code": done.returncode,
            "failed": len(summary.get("units_failed", [])) or int(done.returncode != 0),
            "workers_seen": len({e.run.pid for e in entries}), "peak_rss_gib": peaks, "phases": phase_shares(entries),
            "workers": worker_busy(entries, span)}


def worker_busy(entries, span: float) -> list[dict[str, float]]:
    """Per worker (pid), from the ledger: the share of the steady span it ran units, and its MB/s (of input) while
    it ran them. A worker at the engine's per-thread speed but idle part of the span (a late start, a
    last unit it did not get) shows here, not in the phases."""
    by_pid: dict[int, list] = {}
    for e in entries:
        by_pid.setdefault(e.run.pid, []).append(e)
    out = []
    for runs in by_pid.values():
        busy = sum(e.run.seconds for e in runs)
        out.append({"units": len(runs), "busy": busy / span if span else 0.0,
                    "busy_mb_s": sum(e.n_bytes for e in runs) / busy / 1e6 if busy else 0.0})
    return sorted(out, key=lambda w: -w["busy"])


def phase_shares(entries) -> dict[str, float]:
    """Share of the units' own seconds in each phase (pipeline.unit.PHASES), from the ledger; `commit` is the
    rest (the quarantine file and the ledger entry's write)."""
    from pipeline.unit import PHASES
    total = sum(e.run.seconds for e in entries) or 1.0
    shares = {p: sum(e.run.phases.get(p, 0.0) for e in entries) / total for p in PHASES}
    shares["commit"] = max(0.0, 1.0 - sum(shares.values()))
    return shares


def probe_choice(tokenizer: Path, docs: list[str], probe_bytes: int = 2 << 20) -> dict[str, Any]:
    """What `engine: auto` picks on a probe spread over the corpus, and why."""
    from pipeline.spec import TokenizerSpec
    from pipeline.tokenizers.engines import choose_engine
    probe = docs[::max(1, sum(map(len, docs)) // probe_bytes)]
    engine, report = choose_engine(TokenizerSpec(kind="hf", path=str(tokenizer)), probe)
    return {"engine": engine, "reason": report["reason"], "probe_docs": len(probe)}


def run_bench(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """Every figure of the text benchmark on one corpus (`jsonl`: a JSONL file; `code`: a folder of code files)."""
    from pipeline.unit import BATCH_DOCS
    workdir = Path(args.workdir)
    corpus, tokenizer = prepare(workdir, int(args.min_mb * 1e6), args.vocab_size)
    if kind == "code":
        corpus = prepare_code(workdir, int(args.code_mb * 1e6))
        workdir = workdir / "code-runs"
        workdir.mkdir(exist_ok=True)
    docs = load_docs(corpus)
    result: dict[str, Any] = {"corpus": {"path": str(corpus), "kind": kind, "documents": len(docs),
                                         "bytes": sum(len(d.encode("utf-8")) for d in docs)},
                              "workers": args.workers, "auto": probe_choice(tokenizer, docs)}
    result["raw"] = raw_all(tokenizer, docs, args.engines, args.workers)
    del docs
    for engine in args.engines:
        log.info("raw encode reading %s itself: %s, %d threads", corpus.name, engine, args.workers)
        result["raw"][engine].update(raw_file_speed(tokenizer, engine, corpus, result["corpus"]["bytes"],
                                                    BATCH_DOCS))
    result.update(pipeline_all(corpus, tokenizer, workdir, args, result["corpus"]["bytes"]))
    result["paired"] = paired_runs(corpus, tokenizer, workdir, args, result["corpus"]["bytes"])
    return result


def paired_runs(corpus: Path, tokenizer: Path, workdir: Path, args: argparse.Namespace, text_bytes: int) -> dict:
    """--pairs N: N more (engine reading the input, then `tokenmill run`) pairs per engine but hf, back to back,
    so that each ratio compares two runs a few seconds apart on a machine whose speed drifts."""
    from pipeline.unit import BATCH_DOCS
    out: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.pairs):
        for engine in (e for e in args.engines if e != "hf"):
            log.info("pair: %s reading %s itself, then tokenmill run", engine, corpus.name)
            raw = raw_file_speed(tokenizer, engine, corpus, text_bytes, BATCH_DOCS)
            run = pipeline_speed(run_spec(corpus, tokenizer, workdir, engine, args), args.workers, text_bytes, workdir)
            out.setdefault(engine, []).append({"raw_file_mb_s": raw["file_mb_s"], "pipeline_mb_s": run["mb_s"],
                                               "ratio": run["mb_s"] / raw["file_mb_s"], "fixed_s": run["fixed_s"]})
    return out


def raw_all(tokenizer: Path, docs: list[str], engines: list[str], threads: int) -> dict[str, Any]:
    """Raw figures per engine, each checked against hf's ids (hf comes first)."""
    from pipeline.unit import BATCH_DOCS
    results, reference = {}, None
    for engine in engines:
        log.info("raw encode: %s, %d threads", engine, threads)
        figures, ids = raw_speed(tokenizer, engine, docs, BATCH_DOCS)
        reference = ids if engine == "hf" else reference
        figures["mismatched_docs"] = mismatched_docs(ids, reference) if reference is not None else None
        results[engine] = figures
    return results


def pipeline_all(corpus: Path, tokenizer: Path, workdir: Path, args: argparse.Namespace, text_bytes: int) -> dict:
    """One `tokenmill run` per engine, each starting its own embedded Ray as a user's command does."""
    out: dict[str, Any] = {"pipeline": {}}
    for engine in args.engines:
        log.info("pipeline: tokenmill run, %s, %d workers", engine, args.workers)
        out["pipeline"][engine] = pipeline_speed(run_spec(corpus, tokenizer, workdir, engine, args), args.workers,
                                                 text_bytes, workdir)
    return out


def format_result(result: dict[str, Any]) -> str:
    """The benchmark as a Markdown table plus the auto choice."""
    c = result["corpus"]
    what = "a folder of code files (format: files, modality: code)" if c.get("kind") == "code" else "JSONL"
    lines = [f"corpus: {what}, {c['documents']:,} documents, {c['bytes'] / 1e6:.1f} MB; {result['workers']} workers; "
             "steady state: first unit start to last commit (ledger); fixed cost: `tokenmill run`'s wall time "
             "minus that (Ray start-up, plan, engine probe, actors, index)",
             f"auto: {result['auto']['engine']} ({result['auto']['reason']})", "",
             "| engine | raw MB/s (docs in memory) | raw MB/s (engine reads the file) | docs differing from hf "
             "| pipeline MB/s (steady) | pipeline / raw reading the file | pipeline / raw in memory "
             "| wall s (tokenmill run) | fixed cost s | peak RSS per worker (GiB) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for engine, raw in result["raw"].items():
        run = result["pipeline"].get(engine, {})
        file_mb_s = raw.get("file_mb_s", 0.0)
        ratio = f"{run['mb_s'] / raw['mb_s']:.2f}x" if run else "-"
        file_ratio = f"{run['mb_s'] / file_mb_s:.2f}x" if run and file_mb_s else "-"
        fixed = f"{run['fixed_s']:.1f}" if run else "-"
        lines.append(f"| {engine} | {raw['mb_s']:.2f} | {file_mb_s:.2f} | {raw['mismatched_docs']} "
                     f"| {run.get('mb_s', 0):.2f} | {file_ratio} | {ratio} | {run.get('wall_s', 0):.1f} | {fixed} "
                     f"| {', '.join(map(str, run.get('peak_rss_gib', [])))} |")
    for engine, pairs in result.get("paired", {}).items():
        ratios = sorted(p["ratio"] for p in pairs)
        fixed = sorted(p["fixed_s"] for p in pairs)
        each = ", ".join(f"{p['ratio']:.2f}x" for p in pairs)
        lines += ["", f"{engine}, {len(pairs)} back-to-back pairs (engine reading the input, then `tokenmill run`): "
                  f"pipeline / raw {each}; median "
                  f"{ratios[len(ratios) // 2]:.2f}x; fixed cost {fixed[0]:.1f}-{fixed[-1]:.1f} s"]
    workers = [(engine, run["workers"]) for engine, run in result["pipeline"].items() if run.get("workers")]
    if workers:
        lines += ["", "Workers, from the ledger: units run, share of the steady span spent running them, "
                  "MB/s while running (the raw engine per thread: raw MB/s reading the file / workers):", ""]
        for engine, ws in workers:
            per_thread = result["raw"].get(engine, {}).get("file_mb_s", 0.0) / max(1, result["workers"])
            lines.append(f"- {engine}: " + "; ".join(f"{w['units']} units, busy {w['busy']:.0%}, {w['busy_mb_s']:.1f} MB/s"
                                                     for w in ws) + f" (raw per thread {per_thread:.1f} MB/s)")
    phases = [(engine, run["phases"]) for engine, run in result["pipeline"].items() if run.get("phases")]
    if phases:
        names = list(phases[0][1])
        lines += ["", "Where a worker's time goes (share of the units' own seconds, from the ledger's run.phases):", "",
                  "| engine | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        lines += [f"| {engine} | " + " | ".join(f"{shares[n]:.0%}" for n in names) + " |" for engine, shares in phases]
    return "\n".join(lines)


def configure_bench_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", choices=["text"], help="which benchmark (text: engines and the text pipeline)")
    p.add_argument("--workdir", default="/tmp/tokenmill-bench", help="corpus, tokenizer and outputs go here")
    p.add_argument("--min-mb", type=float, default=100.0, help="JSONL corpus size (MB of real text from this machine)")
    p.add_argument("--corpus", type=lambda s: s.split(","), default=["jsonl", "code"],
                   help="comma-separated: jsonl (one JSONL file), code (a folder of Python files)")
    p.add_argument("--code-mb", type=float, default=100.0, help="size of the folder of code files (MB)")
    p.add_argument("--workers", type=int, default=2, help="pipeline workers = raw encode threads")
    p.add_argument("--engines", type=lambda s: s.split(","), default=list(ENGINES), help="comma-separated")
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--unit-mb", type=float, default=0, help="source.unit_bytes of the pipeline runs, in MiB "
                   "(default: the spec's own; the planner cuts a file of 16 MiB or more into at least 4 pieces)")
    p.add_argument("--pairs", type=int, default=0, help="then N back-to-back (raw reading the input, pipeline) "
                   "pairs per engine but hf, and their median ratio")
    p.add_argument("--json", help="also write every figure to this file")


def cli_bench(args: argparse.Namespace) -> int:
    """`tokenmill bench text`: print the table (and write --json)."""
    os.environ["RAYON_NUM_THREADS"] = str(args.workers)  # before any engine builds its thread pool
    args.engines = ["hf", *(e for e in args.engines if e != "hf")]  # hf first: the reference for exactness
    results = {}
    for kind in args.corpus:
        results[kind] = result = run_bench(args, kind)
        print(format_result(result) + "\n", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, sort_keys=True))
    incomplete = [f"{kind}: {e}" for kind, result in results.items() for e, r in result["pipeline"].items()
                  if r["failed"] or r["n_samples"] != result["corpus"]["documents"]]
    if incomplete:
        log.error("pipeline runs that did not commit every document: %s", ", ".join(incomplete))
    return 1 if incomplete else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench_text", description="engines and the text pipeline, side by side")
    configure_bench_parser(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(cli_bench(parser.parse_args(["text", *sys.argv[1:]])))
