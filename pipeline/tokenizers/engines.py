"""Engine choice: the fastest engine that reproduces the tokenizer file's ids exactly.

`auto` encodes a probe drawn from the corpus with every available engine, compares each
against the reference (for `hf`, the library that defines tokenizer.json; for `tiktoken`,
tiktoken itself), and picks the fastest exact one. An engine asked for by name is used even
when not exact, and its mismatch rate on the probe is reported.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from pipeline.tokenizer_spec import BaseTokenizerSpec
from pipeline.tokenizers import Tokenizer, build_tokenizer

log = logging.getLogger(__name__)

# kind -> (reference engine, engines auto may pick); the reference is always a candidate
ENGINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "hf": ("hf", ("tiktoken", "gigatoken", "hf")),
    "tiktoken": ("tiktoken", ("tiktoken", "gigatoken")),
}


def _encode_timed(tokenizer, docs: list[str]) -> tuple[list[np.ndarray], float]:
    tokenizer.encode_batch(["warm-up: lazy initialisation is not encoding speed"])
    start = time.perf_counter()
    batch = tokenizer.encode_batch(docs)
    seconds = time.perf_counter() - start
    return [batch.values[batch.offsets[i]:batch.offsets[i + 1]] for i in range(len(batch))], seconds


def measure_engines(spec: BaseTokenizerSpec, docs: list[str], engines: tuple[str, ...] | None = None,
                    tokenizer: Tokenizer | None = None) -> dict[str, Any]:
    """Speed (MB/s) and exactness against the kind's reference engine of each engine that loads, on `docs`;
    `tokenizer`: the spec's, already built (its file is not loaded again, nor its engine)."""
    ref_engine, candidates = ENGINES[spec.kind]
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    base = tokenizer if tokenizer is not None else build_tokenizer(spec, ref_engine)  # the file loaded once

    def with_engine(engine: str) -> Tokenizer:  # the same tokenizer encoding with `engine`, built at most once
        return base if base.engine == engine else base.with_engine(engine)
    reference, ref_seconds = _encode_timed(with_engine(ref_engine), docs)
    results: dict[str, Any] = {}
    for engine in engines or candidates:
        try:
            # the reference pass is also the reference engine's timing
            ids, seconds = (reference, ref_seconds) if engine == ref_engine else _encode_timed(with_engine(engine),
                                                                                                 docs)
        except Exception as exc:  # noqa: BLE001 - an engine that fails to load or run is not a candidate
            results[engine] = {"available": False, "why": str(exc).split("\n")[0]}
            continue
        mismatched = sum(not np.array_equal(a, b) for a, b in zip(ids, reference))
        results[engine] = {"available": True, "mb_s": round(n_bytes / max(seconds, 1e-9) / 1e6, 2),
                           "mismatched_docs": mismatched, "probe_docs": len(docs), "exact": mismatched == 0}
    return results


def choose_engine(spec: BaseTokenizerSpec, docs: list[str], tokenizer: Tokenizer | None = None
                  ) -> tuple[str, dict[str, Any]]:
    """(engine, report) for a text tokenizer spec, given probe documents from the corpus; `tokenizer`: the
    spec's, already built."""
    if spec.kind not in ENGINES:
        return (tokenizer or build_tokenizer(spec)).engine, {"reason": f"kind {spec.kind} has a single engine"}
    ref_engine = ENGINES[spec.kind][0]
    if spec.engine != "auto":
        results = measure_engines(spec, docs, (spec.engine,), tokenizer) if docs else {}
        return spec.engine, {"reason": _asked_reason(results.get(spec.engine), ref_engine), "probe": results}
    if not docs:
        return ref_engine, {"reason": "no probe documents; using the reference engine"}
    results = measure_engines(spec, docs, tokenizer=tokenizer)
    exact = [(r["mb_s"], name) for name, r in results.items() if r.get("available") and r["exact"]]
    engine = max(exact)[1] if exact else ref_engine
    reason = (f"fastest engine with ids identical to {ref_engine} on {len(docs)} probe documents "
              f"({results[engine]['mb_s']} MB/s)")
    return engine, {"reason": reason, "probe": results}


def _asked_reason(result: dict[str, Any] | None, ref_engine: str) -> str:
    """Why an engine named in the spec is used, with its measured mismatch against the reference."""
    if not result or not result.get("available"):
        return "asked for in the spec (not measured: no probe documents)" if not result else \
            f"asked for in the spec, but it did not load: {result['why']}"
    if result["exact"]:
        return f"asked for in the spec; ids identical to {ref_engine} on {result['probe_docs']} probe documents"
    share = result["mismatched_docs"] / max(1, result["probe_docs"])
    return (f"asked for in the spec; NOT exact: ids differ from {ref_engine} on {result['mismatched_docs']} of "
            f"{result['probe_docs']} probe documents ({share:.1%})")
