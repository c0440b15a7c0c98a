"""The dataset's tokenizer and spec as the index records them, and the sink's size on disk.

Sizes are the sums of the shard file sizes dataset.json names per format (what a reader
downloads), so they need no listing of the folder and agree with `tokenmill verify`.
"""
from __future__ import annotations

from typing import Any

from pipeline.dataset.read import Dataset
from pipeline.report.tokens import Vocabulary

DTYPE_BYTES = {"uint16": 2, "uint32": 4}


def describe(ds: Dataset, out_dir: str, vocab: Vocabulary) -> dict[str, Any]:
    """Name, modality, spec hash, tokenizer, stages and per-format size of the dataset."""
    index = ds.index.to_json()
    tok = dict(index["tokenizer"])
    tok["special"] = [{"id": i, "text": text} for i, text in sorted(vocab.special.items())]
    if tok.get("eos_id") is not None and tok["eos_id"] not in vocab.special:
        tok["special"].insert(0, {"id": tok["eos_id"], "text": None})
    return {"path": str(out_dir), "name": index.get("name"), "modality": index.get("modality"),
            "spec_hash": index.get("spec_hash"), "token_dtype": index["token_dtype"],
            "token_bytes": DTYPE_BYTES.get(index["token_dtype"]), "formats": list(index.get("formats") or []),
            "tokenizer": tok, "stages": [stage_row(s) for s in index.get("stages") or []],
            "storage": storage(ds)}


def stage_row(stage: dict[str, Any]) -> dict[str, Any]:
    """One stage as {kind, settings}: every setting the spec resolved, defaults included."""
    return {"kind": stage.get("kind", "?"), "settings": {k: v for k, v in sorted(stage.items()) if k != "kind"}}


def storage(ds: Dataset) -> list[dict[str, Any]]:
    """Per sink format: shard files, bytes on disk, and bytes on disk per stored token."""
    n_tokens = ds.index.totals.n_tokens
    rows = []
    for fmt in ds.index.formats or sorted({f for s in ds.index.shards for f in s.files}):
        sizes = [s.files[fmt].size for s in ds.index.shards if fmt in s.files]
        rows.append({"format": fmt, "n_files": len(sizes), "n_bytes": sum(sizes),
                     "bytes_per_token": sum(sizes) / n_tokens if n_tokens else None})
    return rows
