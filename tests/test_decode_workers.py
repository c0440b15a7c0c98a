"""resources.decode_workers: media decoded in Ray tasks (processes beside the workers) gives the same shards, the
same quarantine and the same meta as the worker's decode threads; a spec that cannot run them is refused."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from tests import media_fixtures as mf
from tests.tm_testing import run_cli


def _job(root: Path, name: str, resources: str, modality: str = "image", tokenizer: str = "", source: str = "") -> Path:
    tokenizer = tokenizer or f"{{kind: image-vq, path: {root / 'cb' / 'image.safetensors'}}}"
    job = root / f"{name}.yaml"
    job.write_text(f"name: {name}\nsource: {{uri: {root / 'photos'}, modality: {modality}{source}}}\n"
                   f"tokenizer: {tokenizer}\nsink: {{uri: {root / ('out-' + name)}, formats: [arrow, webdataset]}}\n"
                   f"resources: {resources}\nreport: false\n")
    return job


def _shards(out: Path) -> dict[str, bytes]:
    index = json.loads((out / "dataset.json").read_text())
    return {f["path"]: (out / f["path"]).read_bytes() for s in index["shards"] for f in s["files"].values()}


def _quarantine(out: Path) -> list[tuple[str, str]]:
    return sorted((Path(e["uri"]).name, e["reason"]) for f in (out / "_errors").glob("*.parquet")
                  for e in pq.read_table(f).to_pylist())


def test_decode_tasks_give_the_threads_shards_and_quarantine(tmp_path, ray_address):
    """40 real photos (JPEG, PNG, WebP; one EXIF-rotated) and the four damaged ones, in batches of 32 records:
    the arrow and webdataset shards are byte for byte those of decode threads, and each damaged file is
    quarantined with the same reason while its batch's neighbours commit."""
    mf.image_codebook(tmp_path / "cb", k=64)
    photos = mf.write_gallery(tmp_path / "photos", n=40)
    mf.write_photos(tmp_path / "photos" / "more")
    mf.write_damaged_photos(tmp_path / "photos" / "bad", photos[0], photos[2])
    outs = {}
    for name, resources in (("threads", "{workers: 1}"), ("tasks", "{workers: 1, decode_workers: 1}")):
        done = run_cli("run", str(_job(tmp_path, name, resources)), address=ray_address)
        assert done.returncode == 0, done.stderr[-3000:]
        outs[name] = tmp_path / f"out-{name}"
        assert ("decoding in Ray tasks" in done.stderr) == (name == "tasks"), done.stderr[-2000:]
    threads, tasks = _shards(outs["threads"]), _shards(outs["tasks"])
    assert threads and threads.keys() == tasks.keys()
    assert all(threads[k] == tasks[k] for k in threads), "decode tasks changed a shard"
    quarantined = _quarantine(outs["tasks"])
    assert quarantined == _quarantine(outs["threads"])
    assert {name for name, _ in quarantined} == {"cut400.jpg", "cut.webp", "readme.jpg", "huge.png"}
    index = json.loads((outs["tasks"] / "dataset.json").read_text())
    assert index["totals"]["n_samples"] == 40 + 7


def test_decode_workers_need_free_cpus_and_a_media_modality(tmp_path, ray_address):
    """On the session's 2-CPU Ray, 2 workers leave no CPU for decode tasks: the run stops at once and says what
    to change (auto falls back to threads). decode_workers on text is refused when the spec is read."""
    mf.image_codebook(tmp_path / "cb", k=16)
    mf.write_photos(tmp_path / "photos")
    several_units = ", unit_bytes: 1KiB"  # every photo a unit of its own: 2 workers run
    done = run_cli("run", str(_job(tmp_path, "full", "{workers: 2, decode_workers: 2}", source=several_units)),
                   address=ray_address)
    assert done.returncode != 0
    assert "decode_workers: 2 needs CPUs beside the workers'" in done.stderr and "decode_workers: 0" in done.stderr
    assert not (tmp_path / "out-full" / "shards").exists() or not any((tmp_path / "out-full" / "shards").iterdir())
    state = json.loads((tmp_path / "out-full" / "_run.json").read_text())
    assert state["state"] == "failed" and "decode_workers" in state["error"]
    done = run_cli("run", str(_job(tmp_path, "auto", "{workers: 2, decode_workers: auto}", source=several_units)),
                   address=ray_address)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "decoding in Ray tasks" not in done.stderr
    done = run_cli("validate", str(_job(tmp_path, "text", "{decode_workers: 2}", modality="text",
                                        tokenizer="{kind: bytes}")))
    assert done.returncode != 0 and "decode_workers: 2 applies to image, audio and video" in done.stderr


def _by_value() -> None:
    """Ray workers cannot import this test module: send its functions by value, as for a script's own."""
    import sys

    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _decode_or_die(record, source):
    """decode_image, except that the process dies on 'die.jpg' (as a decoder crashing on a file would)."""
    import os

    from pipeline.decoders.image import decode_image
    if record.id.endswith("die.jpg"):
        os._exit(139)
    return decode_image(record, source)


def test_a_decoder_crash_costs_only_its_record(tmp_path, ray_address):
    """A decode task's process dies on one record of a batch: the batch is decoded again record by record, that
    record alone is quarantined (its process died), and the others decode as they do in the worker."""
    import numpy as np

    from pipeline.decoders.image import decode_image
    from pipeline.errors import DecodeError
    from pipeline.runner import decode_in_tasks
    from pipeline.sources import RawRecord
    from pipeline.spec import SourceSpec
    photos = mf.write_gallery(tmp_path / "photos", n=6)
    names = [p.name for p in photos[:3]] + ["die.jpg"] + [p.name for p in photos[3:]]
    data = {p.name: p.read_bytes() for p in photos} | {"die.jpg": photos[0].read_bytes()}
    records = [RawRecord(str(tmp_path / n), str(tmp_path / n), data[n], len(data[n])) for n in names]
    source = SourceSpec(uri=str(tmp_path), modality="image")
    _by_value()
    out = list(decode_in_tasks(records, _decode_or_die, source, 0, tasks=1))
    assert [r.id for r, _ in out] == [r.id for r in records]
    for record, payload in out:
        if record.id.endswith("die.jpg"):
            assert isinstance(payload, DecodeError) and "process died on this record" in payload.reason
        else:
            expect = decode_image(RawRecord(record.source, record.member, record.data, record.n_bytes), source)
            assert isinstance(payload, np.ndarray) and np.array_equal(payload, expect)
            assert record.meta["width"] == expect.shape[1]  # the meta the task's decoder wrote came back
