"""Decoding apart from encoding: a bounded thread pool that decodes ahead of the tokenizer.

Pillow, libsndfile and FFmpeg release the GIL while they decode, so threads overlap media
decoding with the batched encode on the worker's main thread (which may drive a GPU).
At most `threads * AHEAD_PER_THREAD` records, and at most AHEAD_BYTES of their input, are
in flight, so memory stays bounded whatever the unit size; results come back in input
order, so shards stay deterministic. Text decoding is too cheap to hand to a thread
(~1 us a record), so text modalities decode inline. Any exception a decoder raises on one
record (Pillow's OSError on a cut JPEG, a numpy error) becomes that record's DecodeError.
With `resources.decode_workers`, the same contract runs in Ray tasks instead
(pipeline.runner.decode_in_tasks): processes, on the node's CPUs beside the workers.
"""
from __future__ import annotations

import inspect
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, Iterable, Iterator

from pipeline.errors import DecodeError, Quarantined
from pipeline.sources import RawRecord
from pipeline.spec import JobSpec

MEDIA_MODALITIES = ("image", "audio", "video")
AHEAD_PER_THREAD = 4
AHEAD_BYTES = 256 << 20  # input bytes in flight; one record over it still runs, alone


def bind_hints(decode: Callable, tokenizer: Any) -> Callable:
    """The decoder with the tokenizer's hints (target size, sample rate, fps) that it accepts."""
    hints = getattr(tokenizer, "decode_hints", dict)()
    accepted = inspect.signature(decode).parameters
    given = {k: v for k, v in hints.items() if k in accepted and v is not None}
    return partial(decode, **given) if given else decode


def decode_threads(spec: JobSpec) -> int:
    """Decode threads per worker: 0 (inline) for text, else at least 2."""
    if spec.source.modality not in MEDIA_MODALITIES:
        return 0
    return max(2, int(spec.resources.cpus_per_worker))


def safe_decode(decode: Callable, record: RawRecord, source) -> Any:
    """The decoded payload, or the DecodeError that quarantines this record (whatever was raised)."""
    try:
        return decode(record, source)
    except DecodeError as err:
        return err
    except Exception as exc:  # noqa: BLE001 - decoders' libraries raise assorted types; one record fails
        return DecodeError(record.source, record.member, f"decoder failed: {type(exc).__name__}: {exc}")


def decode_stream(items: Iterable[RawRecord | Quarantined], decode: Callable, source,
                  threads: int) -> Iterator[tuple[RawRecord | Quarantined, Any]]:
    """(item, payload or DecodeError) in input order; Quarantined items pass with payload None."""
    if threads <= 0:
        for item in items:
            yield item, None if isinstance(item, Quarantined) else safe_decode(decode, item, source)
        return
    window: deque[tuple[RawRecord | Quarantined, Future | None]] = deque()
    in_flight = 0
    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        for item in items:
            future = None if isinstance(item, Quarantined) else pool.submit(safe_decode, decode, item, source)
            window.append((item, future))
            in_flight += getattr(item, "n_bytes", 0)
            while window and (len(window) >= threads * AHEAD_PER_THREAD or in_flight > AHEAD_BYTES):
                head, fut = window.popleft()
                in_flight -= getattr(head, "n_bytes", 0)
                yield head, fut.result() if fut else None
        while window:
            head, fut = window.popleft()
            yield head, fut.result() if fut else None
