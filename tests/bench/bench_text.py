"""`python tests/bench/bench_text.py` (or `tokenmill bench text` in a source checkout): each engine's raw speed, then the whole pipeline with that engine.

One process, one corpus of real text and code from this machine (Python sources and
/usr/share/doc, >= 100 MB by default, written as JSONL under --workdir), a 32k byte-level
BPE trained by `tokenmill train`. (a) Raw: every engine encodes the documents already in
memory with as many threads as workers. (b) Pipeline: `run_job` with N workers into
committed Arrow shards, once per engine; steady-state MB/s is the corpus's text bytes over
the span from the first unit's start to the last unit's commit (Ray and actor start-up
excluded). Results: docs/benchmarks.md.
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


def load_docs(corpus: Path) -> list[str]:
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


def bench_spec(corpus: Path, tokenizer: Path, out: Path, engine: str, workers: int, unit_bytes: int):
    from pipeline.spec import JobSpec
    return JobSpec.model_validate({
        "name": f"bench-{engine}", "report": False,
        "source": {"uri": str(corpus), "format": "jsonl", "field": "text", "modality": "text", "unit_bytes": unit_bytes},
        "tokenizer": {"kind": "hf", "path": str(tokenizer), "engine": engine},
        "sink": {"uri": str(out), "formats": ["arrow"]}, "resources": {"workers": workers}})


def pipeline_speed(spec, workers: int, text_bytes: int) -> dict[str, Any]:
    """Run the job on Ray into a fresh output; steady-state MB/s (of text, as raw) from the ledger's unit times."""
    from pipeline.dataset.read import DatasetFolder
    from pipeline.job import RunOptions, run_job
    from pipeline.rates import busy_span
    shutil.rmtree(spec.sink.uri, ignore_errors=True)
    memory = WorkerMemory()
    memory.start()
    start = time.perf_counter()
    summary = run_job(spec, RunOptions(num_cpus=workers, show_progress=False))
    wall = time.perf_counter() - start
    entries = DatasetFolder(spec.sink.uri).ledger().sorted()
    peaks = memory.stop({e.run.pid for e in entries})
    span = busy_span(entries)
    n_bytes = sum(e.n_bytes for e in entries)
    return {"engine": summary.engine, "mb_s": text_bytes / span / 1e6, "steady_s": span, "wall_s": wall,
            "wall_mb_s": text_bytes / wall / 1e6, "file_mb_s": n_bytes / span / 1e6, "units": len(entries),
            "n_samples": summary.run_totals.n_samples, "n_tokens": summary.run_totals.n_tokens,
            "failed": len(summary.units_failed),
            "peak_rss_gib": peaks, "phases": phase_shares(entries)}


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


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the text benchmark as one dict."""
    workdir = Path(args.workdir)
    corpus, tokenizer = prepare(workdir, int(args.min_mb * 1e6), args.vocab_size)
    docs = load_docs(corpus)
    result: dict[str, Any] = {"corpus": {"path": str(corpus), "documents": len(docs),
                                         "bytes": sum(len(d.encode("utf-8")) for d in docs)},
                              "workers": args.workers, "auto": probe_choice(tokenizer, docs)}
    result["raw"] = raw_all(tokenizer, docs, args.engines, args.workers)
    del docs
    result.update(pipeline_all(corpus, tokenizer, workdir, args, result["corpus"]["bytes"]))
    return result


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
    """Ray start-up time, then one full run per engine on the same local Ray."""
    from pipeline import runner
    start = time.perf_counter()
    runner.connect(None, args.workers)
    out: dict[str, Any] = {"ray_start_s": time.perf_counter() - start, "pipeline": {}}
    try:
        for engine in args.engines:
            log.info("pipeline: %s, %d workers", engine, args.workers)
            spec = bench_spec(corpus, tokenizer, workdir / f"out-{engine}", engine, args.workers,
                              int(args.unit_mb * 2**20))
            out["pipeline"][engine] = pipeline_speed(spec, args.workers, text_bytes)
    finally:
        runner.shutdown()
    return out


def format_result(result: dict[str, Any]) -> str:
    """The benchmark as a Markdown table plus the auto choice."""
    c = result["corpus"]
    lines = [f"corpus: {c['documents']:,} documents, {c['bytes'] / 1e6:.1f} MB; {result['workers']} workers; "
             f"Ray start-up {result.get('ray_start_s', 0):.1f} s (excluded from steady state)",
             f"auto: {result['auto']['engine']} ({result['auto']['reason']})", "",
             "| engine | raw MB/s | docs differing from hf | pipeline MB/s (steady) | pipeline / raw "
             "| wall s (run_job) | peak RSS per worker (GiB) |",
             "|---|---|---|---|---|---|---|"]
    for engine, raw in result["raw"].items():
        run = result["pipeline"].get(engine, {})
        ratio = f"{run['mb_s'] / raw['mb_s']:.2f}x" if run else "-"
        lines.append(f"| {engine} | {raw['mb_s']:.2f} | {raw['mismatched_docs']} | {run.get('mb_s', 0):.2f} "
                     f"| {ratio} | {run.get('wall_s', 0):.1f} | {', '.join(map(str, run.get('peak_rss_gib', [])))} |")
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
    p.add_argument("--min-mb", type=float, default=100.0, help="corpus size (MB of real text from this machine)")
    p.add_argument("--workers", type=int, default=2, help="pipeline workers = raw encode threads")
    p.add_argument("--engines", type=lambda s: s.split(","), default=list(ENGINES), help="comma-separated")
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--unit-mb", type=float, default=4.0, help="source.unit_bytes of the pipeline runs, in MiB")
    p.add_argument("--json", help="also write every figure to this file")


def cli_bench(args: argparse.Namespace) -> int:
    """`tokenmill bench text`: print the table (and write --json)."""
    os.environ["RAYON_NUM_THREADS"] = str(args.workers)  # before any engine builds its thread pool
    args.engines = ["hf", *(e for e in args.engines if e != "hf")]  # hf first: the reference for exactness
    result = run_bench(args)
    print(format_result(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True))
    incomplete = [e for e, r in result["pipeline"].items() if r["failed"] or r["n_samples"] != result["corpus"]["documents"]]
    if incomplete:
        log.error("pipeline runs that did not commit every document: %s", ", ".join(incomplete))
    return 1 if incomplete else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench_text", description="engines and the text pipeline, side by side")
    configure_bench_parser(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(cli_bench(parser.parse_args(["text", *sys.argv[1:]])))
