"""Lineage: which shard holds a sample, which shards an input went to, which inputs made a shard.

Answers come from the ledger, never from a scan: a sample id starts with its input's name below
the corpus root (`<name>`, `<name>@<offset>`, `<name>#<row>`, `<tar name>/<key>`; docs/formats.md),
and each ledger entry records that root, so the entries whose inputs match name the candidate
shards, and an offset narrows them to the unit whose byte range holds it. Only those shards' `id`
column is read. Internally an id is full: the input's URI and the id's tail.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pyarrow.compute as pc

from pipeline.dataset.read import Dataset, DatasetError, ShardRef, open_dataset
from pipeline.dataset.records import InputSlice, LedgerEntry
from pipeline.errors import EMPTY
from pipeline.sources.listing import relative_name

ID_SEPARATORS = "@#/"


class NotFound(LookupError):
    """No shard of the dataset holds what was asked for; the message says what was looked at, and `details`
    what is known instead (a quarantined sample: its reason, stage and errors file)."""

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


def _id_matches(sample_id: str, uri: str) -> bool:
    """Whether a sample id belongs to an input URI by the id rules of docs/formats.md."""
    return sample_id == uri or (sample_id.startswith(uri) and sample_id[len(uri)] in ID_SEPARATORS)


def _offset_in_range(sample_id: str, inp: InputSlice) -> bool:
    """For `<uri>@<offset>` ids: whether the input's byte range [start, end) holds the offset."""
    tail = sample_id[len(inp.uri):]
    if not tail.startswith("@") or not tail[1:].isdigit():
        return True
    offset, start, end = int(tail[1:]), inp.start or 0, inp.end
    return start <= offset and (end is None or offset < end)


def candidates(ds: Dataset, sample_id: str) -> list[tuple[LedgerEntry, InputSlice]]:
    """(ledger entry, input) pairs that may hold the sample, the most likely first."""
    found = [(e, i) for e in ds.ledger for i in e.inputs if _id_matches(sample_id, i.uri)]
    return sorted(found, key=lambda ei: (not _offset_in_range(sample_id, ei[1]), -len(ei[1].uri)))


def stored_name(entry: LedgerEntry, uri: str) -> str:
    """How the entry's shards name an input in `id` and `source`: below its source root (older entries: the URI)."""
    return relative_name(uri, entry.source_root) if entry.source_root else uri


def resolve_id(ds: Dataset, sample_id: str) -> str:
    """The full id (input URI + tail) for an id as the shards hold it, a full one, or a unique end of one."""
    uris = {i.uri for e in ds.ledger for i in e.inputs}
    if any(_id_matches(sample_id, u) for u in uris):
        return sample_id
    named = {(stored_name(e, i.uri), i.uri) for e in ds.ledger for i in e.inputs}
    exact = {uri + sample_id[len(name):] for name, uri in named if _id_matches(sample_id, name)}
    if len(exact) == 1:
        return exact.pop()
    cuts = [k for k, ch in enumerate(sample_id) if ch in ID_SEPARATORS] + [len(sample_id)]
    full = {u + sample_id[k:] for u in uris for k in cuts if k and u.endswith(sample_id[:k])}
    if len(full) > 1:
        raise NotFound(f"{sample_id!r} is the end of {len(full)} sample ids, e.g. {sorted(full)[:3]}; give more of it")
    return full.pop() if full else sample_id


def _shard_file(ds: Dataset, entry: LedgerEntry) -> ShardRef:
    ref = ds.folder.shard_ref(entry)
    if ref is None:
        raise DatasetError(f"ledger entry {entry.unit} lists no shard file")
    return ref


def _indexed(ds: Dataset) -> set[str]:
    return {s.name for s in ds.index.shards}


def find_sample(out_dir: str, sample_id: str, *, storage_options: dict | None = None) -> dict:
    """Shard, row, unit and input of one sample (its id, a full one, or a unique end of one), reading one shard's ids."""
    return locate_sample(open_dataset(out_dir, storage_options), sample_id)


def locate_sample(ds: Dataset, sample_id: str) -> dict:
    """find_sample on an opened dataset; `sample` is the id as the shard holds it."""
    sample_id = resolve_id(ds, sample_id)
    pairs = candidates(ds, sample_id)
    for n_read, (entry, inp) in enumerate(pairs, start=1):
        ref = _shard_file(ds, entry)
        ids = ds.folder.read_table(ref, ["id"])["id"]
        held = stored_name(entry, inp.uri) + sample_id[len(inp.uri):]
        row = pc.index(ids, held).as_py()
        if row >= 0:
            return {"sample": held, "shard": entry.shard, "row": row, "unit": entry.unit,
                    "input": inp.to_json(), "file": ref.rel, "format": ref.fmt, "in_index": entry.shard in _indexed(ds),
                    "shards_read": n_read}
    looked = ", ".join(sorted({e.shard for e, _ in pairs})) or "none"
    quarantined = _quarantined(ds, sample_id)
    if quarantined:
        raise NotFound(f"sample {sample_id!r} was {_quarantine_text(quarantined)}", {"quarantined": quarantined})
    raise NotFound(f"sample {sample_id!r} is not in {ds.folder.uri} (no input in the ledger matches it, "
                   "in full or by its end)" if not pairs else
                   f"sample {sample_id!r} is not in the shards of its input ({looked})")


def _quarantined(ds: Dataset, sample_id: str) -> dict | None:
    """Why (and at which stage, in which errors file) the sample was set aside, from _errors/, if it was."""
    errors = ds.folder.errors().to_pylist()
    for row in errors:
        member = row.get("member") or ""
        if sample_id in (row["uri"], f"{row['uri']}{member}", f"{row['uri']}/{member}"):
            return {"uri": row["uri"], "member": member, "reason": row["reason"], "stage": row["stage"],
                    "unit": row["unit"], "errors_file": f"_errors/{row['unit']}.parquet", "empty": row["stage"] == EMPTY}
    return None


def _quarantine_text(q: dict) -> str:
    if q["empty"]:
        return f"empty, skipped: {q['reason']} (listed in {q['errors_file']})"
    return f"quarantined, not tokenized: {q['reason']} (stage {q['stage']}, {q['errors_file']})"


def _source_matches(uri: str, inp_uri: str) -> bool:
    """An input matches a URI equal to it or a folder above it."""
    return inp_uri == uri or inp_uri.startswith(uri.rstrip("/") + "/")


def _as_input_uri(ds: Dataset, given: str) -> str:
    """The input URI (or folder) the user means: as given, as a local path from here, or a unique end of one."""
    uris = {i.uri for e in ds.ledger for i in e.inputs}
    if any(_source_matches(given, u) for u in uris):
        return given
    if "://" not in given:
        import os
        local = os.path.abspath(given)
        if any(_source_matches(local, u) for u in uris):
            return local
    tail = "/" + given.strip("/")
    ends = {u for u in uris if u.endswith(tail)}
    folders = {u[: u.index(tail + "/") + len(tail)] for u in uris if tail + "/" in u}
    found = ends | folders
    if len(found) > 1:
        raise NotFound(f"{given!r} matches {len(found)} inputs, e.g. {sorted(found)[:3]}; give more of the path")
    return found.pop() if found else given


def find_source(out_dir: str, uri: str, *, storage_options: dict | None = None) -> list[dict]:
    """Shards and units holding samples of an input (or of every input below a folder URI)."""
    ds = open_dataset(out_dir, storage_options)
    indexed = _indexed(ds)
    uri = _as_input_uri(ds, uri)
    out = []
    for entry in ds.ledger:
        inputs = [i.to_json() for i in entry.inputs if _source_matches(uri, i.uri)]
        if inputs:
            out.append({"shard": entry.shard, "unit": entry.unit, "inputs": inputs,
                        "files": {k: v.path for k, v in entry.files.items()},
                        "n_samples": entry.n_samples, "n_errors": entry.n_errors,
                        "in_index": entry.shard in indexed})
    if not out:
        raise NotFound(f"no unit of {out_dir} read {uri!r} ({len(ds.ledger)} ledger entries looked at)")
    return out


def shard_inputs(out_dir: str, shard: str, *, storage_options: dict | None = None) -> dict:
    """The ledger entry of a shard: the unit and the inputs (with byte ranges) that produced it."""
    ds = open_dataset(out_dir, storage_options)
    name = shard.rsplit("/", 1)[-1].split(".", 1)[0]
    for entry in ds.ledger:
        if entry.shard == name:
            return {"shard": name, "unit": entry.unit, "inputs": [i.to_json() for i in entry.inputs],
                    "n_samples": entry.n_samples, "in_index": name in _indexed(ds)}
    raise NotFound(f"no ledger entry of {out_dir} wrote shard {name!r}")


def lineage_cli(args: argparse.Namespace) -> int:
    """`tokenmill inspect OUT --sample ID | --source URI | --shard NAME`: print where things are."""
    opts = json.loads(args.storage_options) if getattr(args, "storage_options", None) else None
    try:
        if getattr(args, "sample", None):
            result: Any = find_sample(args.out, args.sample, storage_options=opts)
        elif getattr(args, "source", None):
            result = find_source(args.out, args.source, storage_options=opts)
        elif getattr(args, "shard", None):
            result = shard_inputs(args.out, args.shard, storage_options=opts)
        else:
            sys.stderr.write("tokenmill inspect: give --sample ID, --source URI or --shard NAME\n")
            return 2
    except (NotFound, DatasetError) as err:
        sys.stderr.write(f"tokenmill: {err}\n")
        if getattr(args, "json", False):  # a script asked for JSON: it gets JSON, on stdout, with the exit status 1
            sys.stdout.write(json.dumps({"found": False, "error": str(err), **getattr(err, "details", {})},
                                        indent=2) + "\n")
        return 1
    sys.stdout.write(json.dumps(result, indent=2) + "\n" if getattr(args, "json", False) else _text(result))
    return 0


def _text(result: Any) -> str:
    """Short human lines for the terminal."""
    if isinstance(result, list):
        return "".join(f"{r['shard']}  unit {r['unit']}  {r['n_samples']} samples  "
                       f"{', '.join(r['files'].values())}\n" for r in result)
    if "row" in result:
        return (f"{result['sample']}\n  shard {result['shard']} row {result['row']} ({result['file']})\n"
                f"  unit {result['unit']}  input {result['input']['uri']}{_range(result['input'])}\n")
    return f"{result['shard']}  unit {result['unit']}\n" + "".join(
        f"  {i['uri']}{_range(i)}\n" for i in result["inputs"])


def _range(inp: dict) -> str:
    """` bytes [a, b)` for a slice of a file, nothing for a whole file."""
    start, end = inp.get("start") or 0, inp.get("end")
    if not start and end is None:
        return ""
    return f" bytes [{start:,}, {end:,})" if end is not None else f" bytes [{start:,}, end)"
