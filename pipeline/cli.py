"""`tokenmill` command line: validate, plan, run, status, train and the commands of other modules.

Spec and path problems print one line that says what to fix and exit 2; a run whose units
failed for good exits 1; a run that committed a unit with nothing useful in it (no sample,
or more than on_error_max_fraction of its records quarantined) exits 3.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import Any, Callable

from pipeline.errors import ClusterLost, Interrupted, OutputError, SpecError, UnitFailed
from pipeline.spec import load_spec

log = logging.getLogger("tokenmill")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    if getattr(args, "output", None):
        out["sink.uri"] = args.output
    if getattr(args, "workers", None):
        out["resources.workers"] = args.workers
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    """The spec, its tokenizer built and the stages checked against it: what passes here, `run` accepts."""
    from pipeline.validate import check_job
    spec = load_spec(args.job)
    tokenizer = check_job(spec)
    print(f"ok: {args.job} is a valid job spec ({spec.name}, spec hash {spec.spec_hash()}, "
          f"tokenizer {spec.tokenizer.kind} with {tokenizer.vocab_size:,} ids)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from pipeline.plan import make_plan, plan_summary
    spec = load_spec(args.job, _overrides(args))
    units = make_plan(spec)
    print(plan_summary(units))
    print(f"{len(units)} units, {sum(u.n_bytes for u in units):,} bytes", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import time
    from pipeline.job import RunOptions, run_job
    began = time.time()
    spec = load_spec(args.job, _overrides(args))
    try:
        summary = run_job(spec, RunOptions(address=args.address, num_cpus=args.num_cpus,
                                             show_progress=not args.quiet, verify=args.verify,
                                             stop_on_sigterm=True))
        print_summary(summary)  # first: the report is built after the run's outcome is on the screen
        sys.stdout.flush()
        report_began = time.time()
        report_path = _maybe_report(spec)
        ended = time.time()
        print_ending(report_path, report_s=ended - report_began, command_s=ended - began)
        if args.summary_json:
            with open(args.summary_json, "w") as f:
                json.dump(summary.to_json(), f, indent=1, sort_keys=True)
    finally:  # Ray stops when the command is done, not in its exit hook (runner.shutdown says why)
        if "pipeline.runner" in sys.modules:  # a run with nothing to do never imported Ray
            sys.modules["pipeline.runner"].shutdown()
    return 1 if summary.units_failed else 3 if summary.units_suspect else 0


def _maybe_report(spec) -> str | None:
    if not spec.report:
        return None
    try:
        from pipeline.report.build import write_report
    except ImportError:
        return None
    return write_report(spec.sink.uri, storage_options=spec.sink.storage_options)


def print_summary(summary) -> None:
    """The run summary (pipeline.job.RunSummary) as the lines a person reads after `tokenmill run`.

    Each time figure says what it covers: units (first unit start to last commit) and the run
    (spec to index: Ray start-up, planning and the engine probe included). The report's time and
    the whole command's, which is everything the user waited for, follow in print_ending.
    """
    from pipeline.humanize import plural, sig3
    t, r = summary.totals, summary.run_totals
    print(f"tokenmill: {summary.name} -> {summary.output}")
    if summary.units_suspect:
        print(f"  WARNING: {len(summary.units_suspect)} unit(s) committed nothing useful (exit 3); "
              f"reasons in {summary.output}/_errors/:")
        for unit_id, why in sorted(summary.units_suspect.items())[:10]:
            print(f"    {unit_id}: {why}")
    print(f"  units: {summary.units_total} planned, {summary.units_run} run, "
          f"{summary.units_skipped} already committed, "
          + (f"{summary.units_reformatted} given the spec's formats from their shards, " if summary.units_reformatted
             else "") + f"{summary.units_redone} redone, "
          + (f"{summary.units_removed} removed (their inputs are gone or changed), " if summary.units_removed
             else "") + f"{len(summary.units_failed)} failed, {summary.retries} retries")
    if summary.units_run == 0 and summary.units_reformatted:
        print(f"  this run: nothing tokenized; {plural(summary.units_reformatted, 'committed unit')} given the "
              "spec's formats from their shards")
    elif summary.units_run == 0:
        print("  this run: nothing to do (every planned unit is already committed)")
    else:
        print(f"  this run: {plural(r.n_samples, 'sample')}, {plural(r.n_tokens, 'token')}, "
              f"{plural(r.n_bytes, 'byte')} of input, {_bad_and_empty(r.n_errors, r.n_empty)}, engine {summary.engine}")
        print(f"  speed: {sig3(r.steady_mb_s)} MB/s while units ran (first unit start to last commit); "
              f"{sig3(r.mb_s)} MB/s over the run's {sig3(summary.seconds)} s (Ray start-up, planning and "
              "the engine probe included)")
    if summary.entries_set_aside:
        print(f"  listing: {summary.entries_set_aside} entries not read (not regular files, links, unlistable, "
              "hidden), quarantined with their reasons")
    print(f"  dataset: {plural(t['n_shards'], 'shard')}, {plural(t['n_samples'], 'sample')}, "
          f"{plural(t['n_tokens'], 'token')}, {plural(t['n_bytes'], 'byte')}, "
          f"{_bad_and_empty(t['n_errors'], t.get('n_empty', 0))}")
    for stage, stats in r.stages.items():
        print(f"  stage {stage}: " + ", ".join(f"{k} {_number(v)}" for k, v in stats.items())
              + _reduction(stats))
    reason = summary.engine_report.get("reason")
    if reason:
        print(f"  engine: {summary.engine}: {reason}")
    for problem in summary.ledger_problems:
        print(f"  repaired: {problem}")
    if summary.foreign:
        print(f"  not tokenmill's, left as they are: {', '.join(summary.foreign[:5])}"
              + (f" (+{len(summary.foreign) - 5} more)" if len(summary.foreign) > 5 else ""))
    for unit_id, message in sorted(summary.units_failed.items()):
        print(f"  FAILED {unit_id}: {message}")


def print_ending(report_path: str | None, report_s: float, command_s: float | None) -> None:
    """The summary's last lines, once the report (when on) is written: where it is and what the command took."""
    from pipeline.humanize import sig3
    if report_path:
        print(f"  report: {report_path} (written in {sig3(report_s)} s)")
    if command_s is not None:
        print(f"  total: {sig3(command_s)} s for the whole command")


def _bad_and_empty(n_errors: int, n_empty: int) -> str:
    """'3 quarantined, 28 empty (skipped)': bad input and empty input, apart."""
    return f"{n_errors:,} quarantined" + (f", {n_empty:,} empty (skipped)" if n_empty else "")


def _number(value: Any) -> str:
    from pipeline.humanize import sig3
    return f"{value:,}" if isinstance(value, int) else sig3(value) if isinstance(value, float) else str(value)


def _reduction(stats: dict[str, Any]) -> str:
    before, after = stats.get("tokens_before"), stats.get("tokens_after")
    return f" (sequences {1 - after / before:.1%} shorter)" if before and after is not None else ""


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.status import dataset_status, format_status
    status = dataset_status(args.out)
    print(json.dumps(status, indent=1, sort_keys=True) if args.json else format_status(status))
    # a script can tell a folder the next run must repair or resume (a run whose driver is gone, or that failed)
    # from one that is complete or still being written
    return 1 if status["problems"] or status["state"].startswith(("interrupted", "failed")) else 0


def cmd_train(args: argparse.Namespace) -> int:
    from pipeline.spec import SourceSpec, parse_size
    fmt = args.format or "files"
    modality = args.modality or "text"
    uri = args.input[0] if len(args.input) == 1 else list(args.input)
    source = SourceSpec(uri=uri, format=fmt, modality=modality, field=args.field, column=args.field)
    try:
        result = _train(source, modality, args, parse_size(args.sample_bytes))
    except ValueError as exc:  # a bad option value or an unusable corpus: one line, exit 2
        raise SpecError(f"train: {exc}") from None
    print(json.dumps(result, sort_keys=True))
    return 0


def _train(source, modality: str, args: argparse.Namespace, max_bytes: int) -> dict[str, Any]:
    from pipeline.train.bpe import sample_corpus, train_bpe
    if modality == "image":
        from pipeline.train.codebook import train_image_codebook
        result = train_image_codebook(source, args.vocab_size, args.output, max_bytes)
    elif modality == "audio":
        from pipeline.train.codebook import train_audio_codebook
        result = train_audio_codebook(source, args.vocab_size, args.output, max_bytes)
    elif modality == "binary":
        from pipeline.train.binary import train_binary_bpe
        result = train_binary_bpe(sample_corpus(source, max_bytes), args.vocab_size, args.output)
    else:
        result = train_bpe(sample_corpus(source, max_bytes), args.vocab_size, args.output)
    return result


def _lazy(module: str, func: str, extra: str | None = None) -> Callable[[argparse.Namespace], int]:
    """A command implemented in another module, imported only when it runs; `extra` installs what it needs."""
    def call(args: argparse.Namespace) -> int:
        import importlib
        try:
            implementation = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if extra is None or (exc.name or "").startswith("pipeline"):
                raise
            raise SpecError(f"{args.command}: needs the package {exc.name!r}, which is not installed; "
                            f"pip install 'tokenmill[{extra}]'") from None
        return getattr(implementation, func)(args)
    return call


def cmd_inspect(args: argparse.Namespace) -> int:
    """With --out DIR: write what a sample's tokens decode to; otherwise: where it lives (lineage)."""
    if args.dest:
        if not args.sample:
            raise SpecError("inspect --out needs --sample ID")
        from pipeline.decode_sample import cli_inspect
        return cli_inspect(args)
    from pipeline.lineage import lineage_cli
    return lineage_cli(args)


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="dataset folder (sink.uri)")
    p.add_argument("--sample", help="sample id (the `id` column), or a unique end of one")
    p.add_argument("--source", help="input URI: which shards hold its samples")
    p.add_argument("--shard", help="shard name: which inputs produced it")
    p.add_argument("--out", dest="dest", help="write what the sample decodes to (text, PNG, WAV) into this folder")
    p.add_argument("--json", action="store_true")
    p.add_argument("--storage-options", default=None, help="fsspec options as JSON")


# The arguments of the commands implemented elsewhere live here, so that building the parser
# imports none of their modules (report needs pandas and dask, which the base install lacks).
def _submit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="job spec (YAML); its paths must be reachable from the cluster (e.g. s3://)")
    p.add_argument("--address", required=True, help="Ray Jobs API, e.g. http://head:8265")
    p.add_argument("--pip", action="append", help="pip requirement to install on the cluster (repeatable)")
    p.add_argument("--no-follow", action="store_true", help="print the job id and return at once")


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder of a tokenmill run (holds dataset.json); local path or fsspec URL")
    p.add_argument("--group-by", default="folder",
                   help="folder (top folder of the input below their common prefix), extension, modality, "
                        "or meta:<key> (a field of the samples' meta JSON); default: folder")
    p.add_argument("--storage-options", default=None, help="fsspec storage options as JSON, e.g. for S3")


def _stats_args(p: argparse.ArgumentParser) -> None:
    _report_args(p)
    p.add_argument("--json", action="store_true", help="print all statistics as JSON")


def _export_args(p: argparse.ArgumentParser) -> None:
    formats = p.add_subparsers(dest="export_format", required=True)
    megatron = formats.add_parser("megatron", help="Megatron-LM indexed dataset (.bin + .idx)")
    megatron.add_argument("out", help="dataset folder (or its dataset.json), local or any fsspec URL")
    megatron.add_argument("dest_prefix", help="writes DEST_PREFIX.bin and DEST_PREFIX.idx")
    megatron.add_argument("--storage-options", type=json.loads, default=None,
                          help="fsspec options as JSON, for both OUT and DEST_PREFIX")


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", choices=["text"], help="which benchmark (text: engines and the text pipeline)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of tests/bench/bench_text.py (--help there)")


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "validate": (cmd_validate, "check a job spec"),
    "plan": (cmd_plan, "list inputs and print the work units"),
    "run": (cmd_run, "run a job (embedded local Ray unless --address)"),
    "status": (cmd_status, "show a dataset's (or a running job's) progress"),
    "verify": (_lazy("pipeline.verify", "cli_verify"), "check every shard's size and sha256 against the ledger"),
    "train": (cmd_train, "learn a tokenizer from a corpus"),
    "submit": (_lazy("pipeline.submit", "cli_submit"), "submit a job to a Ray cluster through the Ray Jobs API"),
    "inspect": (cmd_inspect, "find a sample's shard and input, or decode its tokens to files"),
    "report": (_lazy("pipeline.report.build", "cli_report", extra="report"),
             "write OUT/report.html (statistics and plots)"),
    "stats": (_lazy("pipeline.report.build", "cli_stats", extra="report"),
            "print the dataset statistics (--json for scripts)"),
    "export": (_lazy("pipeline.sinks.megatron", "cli_export"), "export a dataset for other trainers"),
    "bench": (_lazy("pipeline.bench_entry", "cli_bench"), "measure engine and pipeline throughput"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenmill", description="raw corpora -> token shards, on Ray")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        CONFIGURE[name](p)
    return parser


def _job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", help="job spec (YAML)")
    p.add_argument("--output", help="override sink.uri")
    p.add_argument("--workers", type=int, help="override resources.workers")


def _run_args(p: argparse.ArgumentParser) -> None:
    _job_args(p)
    p.add_argument("--address", help="Ray cluster to join (auto, ray://host:10001); default: embedded local Ray")
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded local Ray (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--summary-json", help="also write the run summary to this file")
    p.add_argument("--verify", action="store_true",
                   help="also check every committed shard's sha256 (reads them all) and redo those that differ")


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder (sink.uri)")
    p.add_argument("--json", action="store_true")


def _verify_args(p: argparse.ArgumentParser) -> None:
    _status_args(p)
    p.add_argument("--storage-options", default=None, help="fsspec options as JSON")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, nargs="+",
                   help="corpus URIs or globs (as source.uri); an unquoted shell glob's expansion works too")
    p.add_argument("--format", choices=["files", "lines", "jsonl", "parquet", "webdataset"])
    p.add_argument("--field", default="text", help="jsonl field / parquet column")
    p.add_argument("--modality", choices=["text", "code", "binary", "image", "audio"])
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--sample-bytes", default="256MiB", help="how much of the corpus to learn from")
    p.add_argument("--output", required=True, help="where to write the tokenizer file")


CONFIGURE: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "validate": lambda p: p.add_argument("job"),
    "plan": _job_args,
    "run": _run_args,
    "status": _status_args,
    "verify": _verify_args,
    "train": _train_args,
    "submit": _submit_args,
    "inspect": _inspect_args,
    "report": _report_args,
    "stats": _stats_args,
    "export": _export_args,
    "bench": _bench_args,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command][0](args)
    except BrokenPipeError:  # `tokenmill plan job.yaml | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except (SpecError, OutputError, ConnectionError) as exc:
        print(f"tokenmill: error: {exc}", file=sys.stderr)
        return 2
    except (UnitFailed, ClusterLost) as exc:  # committed units stay committed; the message says how to go on
        print(f"tokenmill: failed: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:  # SIGTERM during a run: the exit status a shell gives a command it killed
        print(f"tokenmill: interrupted: {exc}; what committed stays committed: run the same command again to "
              "resume", file=sys.stderr)
        return 128 + signal.SIGTERM


def entry() -> None:
    """The `tokenmill` command: main(), then exit. A process that loaded Ray leaves at once once its output is
    flushed: Ray stopped with the command (runner.shutdown), and the interpreter's own teardown of Ray's
    native library took another 0.24-0.31 s after the last exit hook, on every run (measured)."""
    code = main()
    if "ray" not in sys.modules:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # nobody reads any more, or the stream is closed
        pass
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    entry()
