"""`python tests/bench/accept_tiktoken.py [--mb 50]`: issue 14's acceptance for production tokenizers, as a new user
would run it, with one command and numbers at the end.

For each of the real o200k_base and cl100k_base rank files that `bpe-openai` ships (`.tiktoken.gz`), on --mb MB
of real text and code from this machine (stdlib sources and /usr/share/doc, interleaved) written as JSONL:
1. `tokenmill run` (the CLI, an embedded local Ray, 2 workers, `kind: tiktoken`, no pattern given: recognised
   by content) -> for every document, the ids are exactly tiktoken's official `encode_ordinary` followed by the
   official `<|endoftext|>` id; the index records n_vocab and the special tokens;
2. the raw engine (tiktoken's `encode_ordinary_batch`, 2 threads) on the same documents in memory, against the
   pipeline's steady state (first unit start to last commit, from the ledger): MB/s and their ratio;
3. the corpus copied to another folder (times kept), the tokenizer file moved, the job renamed -> the same shard
   names and bytes; the renamed job over the first output runs nothing.
Exit status 0 when every check holds. Results: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.dataset.read import DatasetFolder  # noqa: E402
from pipeline.rates import busy_span  # noqa: E402
from tests.tokenizers.production import rank_file, real_texts, reference_encoding  # noqa: E402

JOB = """name: {name}
source: {{uri: {corpus}, format: jsonl, modality: text}}
tokenizer: {{kind: tiktoken, path: {tok}}}
sink: {{uri: {out}, formats: [arrow]}}
resources: {{workers: 2}}
report: false
"""


def write_corpus(path: Path, mb: float) -> list[tuple[int, str]]:
    """JSONL of real documents; returns (byte offset of the line, text) for each."""
    docs, offset = [], 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for text in real_texts(int(mb * 1e6)):
            line = (json.dumps({"text": text}) + "\n").encode()
            f.write(line)
            docs.append((offset, text))
            offset += len(line)
    return docs


def run(job: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(job), "--num-cpus", "2", "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"tokenmill run {job} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done, time.perf_counter() - started


def shard_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir()) if p.is_file()}


def check_encoding(name: str, work: Path, docs: list[tuple[int, str]], corpus: Path) -> dict:
    enc = reference_encoding(name)
    eot = enc.eot_token
    tok = work / f"{name}-rank-file" / rank_file(name).name
    tok.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(rank_file(name), tok)
    out = work / f"out-{name}"
    job = work / f"{name}.yaml"
    job.write_text(JOB.format(name=f"accept-{name}", corpus=corpus, tok=tok, out=out))
    done, wall = run(job)

    index = json.loads((out / "dataset.json").read_text())
    tables = [pa.ipc.open_file(out / s["files"]["arrow"]["path"]).read_all() for s in index["shards"]]
    got = {i: t for table in tables for i, t in zip(table.column("id").to_pylist(), table.column("tokens").to_pylist())}
    texts = [text for _, text in docs]
    started = time.perf_counter()
    expected = enc.encode_ordinary_batch(texts, num_threads=2)
    raw_seconds = time.perf_counter() - started
    # an empty document is skipped (counted as n_empty), every other one is a sample
    mismatched = sum(got.get(f"{corpus.name}@{offset}") != ids + [eot]
                     for (offset, text), ids in zip(docs, expected) if text)
    n_empty = sum(1 for _, text in docs if not text)
    n_bytes = sum(len(t.encode()) for t in texts)
    entries = list(DatasetFolder(str(out)).ledger().entries.values())
    steady = n_bytes / busy_span(entries) / 1e6
    engine = index["tokenizer"]["engine"]  # what `engine: auto` chose; its raw speed is the pipeline's baseline
    engine_seconds = _engine_seconds(tok, engine, [t for t in texts if t])

    # elsewhere: the corpus copied (times kept), the rank file moved, the job renamed
    moved = work / f"moved-{name}"
    shutil.rmtree(moved, ignore_errors=True)
    (moved / "data").mkdir(parents=True)
    shutil.copy2(corpus, moved / "data" / corpus.name)
    shutil.copy2(tok, moved / "tokenizer.tiktoken.gz")
    job2 = moved / "job.yaml"
    job2.write_text(JOB.format(name=f"renamed-{name}", corpus=moved / "data" / corpus.name,
                               tok=moved / "tokenizer.tiktoken.gz", out=moved / "out"))
    run(job2)
    identical = shard_files(out) == shard_files(moved / "out")
    job3 = work / f"{name}-renamed.yaml"
    job3.write_text(job.read_text().replace(f"name: accept-{name}", f"name: accept-{name}-v2"))
    again, _ = run(job3)
    units_line = next(x for x in again.stdout.splitlines() if "units:" in x)
    return {"encoding": name, "docs": len(docs), "mb": round(n_bytes / 1e6, 1), "mismatched_docs": mismatched,
            "missing_docs": len(docs) - n_empty - len(got), "empty_docs": n_empty,
            "empty_counted": index["totals"]["n_empty"] == n_empty, "vocab_size": index["tokenizer"]["vocab_size"],
            "n_vocab": enc.n_vocab, "eos_id": index["tokenizer"].get("eos_id"), "eot": eot,
            "special": index["tokenizer"].get("special_tokens"), "raw_mb_s": round(n_bytes / raw_seconds / 1e6, 1),
            "engine": engine, "engine_raw_mb_s": round(n_bytes / engine_seconds / 1e6, 1),
            "steady_mb_s": round(steady, 1), "ratio": round(steady * engine_seconds / n_bytes * 1e6, 2),
            "wall_s": round(wall, 1), "units": len(entries), "moved_identical": identical,
            "renamed_runs_nothing": " 0 run," in units_line}


def _engine_seconds(tok: Path, engine: str, texts: list[str]) -> float:
    """Seconds the chosen engine takes alone over the documents in memory, in the pipeline's batches, 2 threads."""
    from pipeline.spec import TokenizerSpec
    from pipeline.tokenizers import build_tokenizer
    from pipeline.unit import BATCH_DOCS
    os.environ["RAYON_NUM_THREADS"] = "2"
    built = build_tokenizer(TokenizerSpec(kind="tiktoken", path=str(tok)), engine)
    built.encode_batch(["warm-up"])
    started = time.perf_counter()
    for i in range(0, len(texts), BATCH_DOCS):
        built.encode_batch(texts[i:i + BATCH_DOCS])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50.0, help="MB of real text and code")
    parser.add_argument("--workdir", default="/tmp/tm_accept_tiktoken")
    parser.add_argument("--encodings", nargs="+", default=["o200k_base", "cl100k_base"])
    args = parser.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    corpus = work / "corpus" / "corpus.jsonl"
    docs = write_corpus(corpus, args.mb)
    ok = True
    for name in args.encodings:
        r = check_encoding(name, work, docs, corpus)
        good = (r["mismatched_docs"] == 0 and r["missing_docs"] == 0 and r["empty_counted"]
                and r["vocab_size"] == r["n_vocab"]
                and r["eos_id"] == r["eot"] and r["special"].get("<|endoftext|>") == r["eot"]
                and r["moved_identical"] and r["renamed_runs_nothing"])
        ok &= good
        print(json.dumps({k: v for k, v in r.items() if k != "special"}))
        print(f"{name}: {r['docs']:,} documents, {r['mb']} MB: {r['mismatched_docs']} differ from tiktoken's "
              f"encode_ordinary + <|endoftext|> ({r['eot']}), {r['missing_docs']} missing, {r['empty_docs']} empty ones skipped; vocab_size {r['vocab_size']:,} "
              f"(n_vocab {r['n_vocab']:,}); tiktoken's own encode_ordinary_batch {r['raw_mb_s']} MB/s (2 threads); the engine "
              f"auto chose, {r['engine']}, alone {r['engine_raw_mb_s']} MB/s (2 threads); pipeline steady "
              f"{r['steady_mb_s']} MB/s over {r['units']} units = {r['ratio']}x the engine alone; whole command {r['wall_s']} s; "
              f"moved corpus identical shards: {r['moved_identical']}; renamed job runs nothing: "
              f"{r['renamed_runs_nothing']} -> {'OK' if good else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
