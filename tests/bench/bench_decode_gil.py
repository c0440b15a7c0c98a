"""`python tests/bench/bench_decode_gil.py [--seconds 3]`: how much each media decoder holds the GIL, so how far decode threads scale.

A worker feeds its encoder (on a GPU node: the GPU) from decode threads in the same process
(pipeline.decoders.pool). Threads add throughput with cores only while the decoder runs with
the GIL released (libjpeg, Pillow's resize, libsndfile, FFmpeg); the Python between those
calls runs one thread at a time. For each decoder, on real media (scikit-image photos as JPEG
at 256 and 512 px, decoded to image-vq's 256 px grid; espeak-ng speech as WAV, FLAC, OGG, MP3,
resampled to 24 kHz; an H.264 clip of a panned photo, sampled at 8 fps), this prints:
- its rate on one thread alone;
- the GIL it holds per record: a pure-Python counter runs on a second thread beside it (switch
  interval 0.1 ms); the share of its solo rate the counter loses is the share of the time the
  decoder held the GIL (an upper bound: switching costs count as held);
- the ceiling that sets for any number of threads in one process (1 / GIL seconds per record);
- measured here with this machine's cores: that many threads, that many processes (a process
  pool pays for shipping bytes in and arrays out) and Ray tasks as `resources.decode_workers`
  runs them (pipeline.runner.decode_in_tasks: batches of 32 records, one task per core in flight).
Results: docs/benchmarks.md ("Media decode: threads or processes").
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.decoders import decoder_for  # noqa: E402
from pipeline.sources import RawRecord  # noqa: E402
from pipeline.spec import SourceSpec  # noqa: E402
from tests import media_fixtures as mf  # noqa: E402

HINTS = {"image": {"size": 256, "patch": 16}, "audio": {"sample_rate": 24000},
         "video": {"fps": 8.0, "size": 256, "patch": 16}}


def corpora(root: Path) -> dict[str, tuple[str, list[RawRecord]]]:
    clip = mf.write_video(root / "pan.mp4", "libx264", mf.pan_frames(64, 256, 256), fps=8)
    return {"JPEG 256 px -> 256 grid": ("image", mf.jpeg_records(24, 256)),
            "JPEG 512 px -> 256 grid": ("image", mf.jpeg_records(24, 512)),
            "speech WAV/FLAC/OGG/MP3 -> 24 kHz": ("audio", mf.file_records(mf.write_audio(root / "audio"))),
            "H.264 256 px, 8 s -> 8 fps": ("video", mf.file_records([clip]))}


_CHILD: dict = {}


def _child_decode(modality: str, record: RawRecord):
    """In a pool process: decode one record (its bytes came in by pickle; the payload goes back the same way)."""
    if modality not in _CHILD:  # built once per process, as a worker builds its decoder once
        _CHILD[modality] = partial(decoder_for(modality), **HINTS[modality]), SourceSpec(uri="bench", modality=modality)
    decode, source = _CHILD[modality]
    return decode(record, source)


def decode_all(modality: str, records: list[RawRecord], repeat: int) -> int:
    decode = partial(decoder_for(modality), **HINTS[modality])
    source = SourceSpec(uri="bench", modality=modality)
    for _ in range(repeat):
        for record in records:
            decode(record, source)
    return repeat * len(records)


def spin(stop: threading.Event, out: list[int]) -> None:
    n = 0
    while not stop.is_set():
        n += 1
    out.append(n)


def counter_rate(seconds: float, work=None) -> tuple[float, float, int]:
    """Counts/s of a pure-Python counter thread, alone or beside `work()` on this thread; (rate, elapsed, done)."""
    stop, out = threading.Event(), []
    thread = threading.Thread(target=spin, args=(stop, out))
    start = time.perf_counter()
    thread.start()
    done = 0
    if work is None:
        time.sleep(seconds)
    else:
        while time.perf_counter() - start < seconds:
            done += work()
    stop.set()
    thread.join()
    elapsed = time.perf_counter() - start
    return out[0] / elapsed, elapsed, done


def pooled_rate(pool_cls, workers: int, modality: str, records: list[RawRecord], repeat: int) -> float:
    work = records * repeat
    with pool_cls(workers) as pool:
        list(pool.map(partial(_child_decode, modality), records[:workers]))  # start-up and imports not counted
        start = time.perf_counter()
        list(pool.map(partial(_child_decode, modality), work, **({"chunksize": 4} if pool_cls is
                                                                  ProcessPoolExecutor else {})))
        return len(work) / (time.perf_counter() - start)


def tasks_rate(workers: int, modality: str, records: list[RawRecord], repeat: int) -> float:
    """Records/s decoded by Ray tasks (pipeline.runner.decode_in_tasks, as resources.decode_workers runs them)."""
    from pipeline import runner
    decode = partial(decoder_for(modality), **HINTS[modality])
    source = SourceSpec(uri="bench", modality=modality)
    list(runner.decode_in_tasks(records * 2, decode, source, 0, workers))  # task workers start, imports
    start = time.perf_counter()
    n = sum(1 for _ in runner.decode_in_tasks(records * repeat, decode, source, 0, workers))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each counter window")
    args = parser.parse_args()
    cores = os.cpu_count() or 2
    from pipeline import runner
    runner.connect(None, cores)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (modality, records) in corpora(Path(tmp)).items():
            decode_all(modality, records, 1)  # warm-up: lazy imports, codec set-up
            start = time.perf_counter()
            n = decode_all(modality, records, 2)
            alone = n / (time.perf_counter() - start)
            sys.setswitchinterval(1e-4)
            solo, _, _ = counter_rate(args.seconds)
            beside, elapsed, done = counter_rate(args.seconds, partial(decode_all, modality, records, 1))
            sys.setswitchinterval(5e-3)  # Python's default again for the pools
            held = max(0.0, 1 - beside / solo)
            gil_s = held * elapsed / done
            repeat = max(1, int(alone * args.seconds / len(records)))
            threads = pooled_rate(ThreadPoolExecutor, cores, modality, records, repeat)
            procs = pooled_rate(ProcessPoolExecutor, cores, modality, records, repeat)
            tasks = tasks_rate(cores, modality, records, repeat)
            rows.append((name, alone, gil_s * 1e6, held, 1 / gil_s if gil_s else float("inf"), threads, procs,
                         tasks))
            print(f"{name}: done", file=sys.stderr, flush=True)
    runner.shutdown()
    print(f"\n{cores} cores here; records/s; the ceiling is what threads in one process could reach at most\n")
    print(f"| decoder | 1 thread | GIL held per record | GIL share | ceiling, threads | {cores} threads here | "
          f"{cores} processes here | Ray tasks here |")
    print("|---|---|---|---|---|---|---|---|")
    for name, alone, gil_us, held, ceiling, threads, procs, tasks in rows:
        print(f"| {name} | {alone:,.0f} | {gil_us:,.0f} us | {held:.0%} | {ceiling:,.0f} | {threads:,.0f} | "
              f"{procs:,.0f} | {tasks:,.0f} |")


if __name__ == "__main__":
    main()
