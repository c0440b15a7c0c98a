"""Weighted mixtures of tokenmill datasets in one global order, resumable on any layout.

Position p of the mixed sequence comes from the source that a uniform draw keyed on
(seed, p // 4096) picks under the weights in force at its global step (the curriculum: a list
of (step, weights)). Each source is read in its own global order, epoch after epoch (the mixed
stream is endless; stop at your step budget), so position p is the next unread window of the
source it picks. Every consumer draws the choices of every global batch (cheap: G numbers)
and reads only its slice, so the state is the mixed position, the step and each source's
position: the same on every rank. Sources may be batched (batch_size): the mixture then yields
batches of that many mixed windows.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.loader.epoch import Epoch
from pipeline.loader.follow import Generation
from pipeline.loader.cache import ShardCache
from pipeline.loader.pack import Windows, concat, empty
from pipeline.loader.state import (MIXTURE_FORMAT, STATE_VERSION, StateError, check_fields, check_worker_restore,
                                   unwrap)
from pipeline.loader.token_dataset import TokenDataset

_CHUNK = 4096


@dataclass(frozen=True)
class Cursor:
    """A source's next window: its epoch, the position in it, the epoch's anchor and generation."""

    epoch: int
    position: int
    anchor: tuple[int, int]
    generation: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "anchor": list(self.anchor),
                "generation": self.generation}


@dataclass(frozen=True)
class MixStart:
    position: int
    step: int
    cursors: tuple[Cursor, ...]
    skip: int | None = None
    pass_start: int = 0
    worker_steps: int = 0


class _Source:
    """One source read epoch after epoch from a cursor: windows at offsets from it, and moving it."""

    def __init__(self, ds: TokenDataset, cursor: Cursor) -> None:
        self.ds, self.cursor = ds, cursor
        self._epochs: dict[int, tuple[Epoch, ShardCache]] = {}

    def _epoch(self, e: int) -> Epoch:
        if e not in self._epochs:
            c = self.cursor
            if e == c.epoch and c.generation is not None:
                self.ds._use_saved(Generation.from_json(c.generation))
            index = self.ds.index
            cache = self.ds.cache(index)
            self._epochs[e] = (self.ds.open_epoch(e, index, c.anchor if e == c.epoch else (0, 0), cache), cache)
        return self._epochs[e][0]

    def close(self, before: int | None = None) -> None:
        """Close the epochs before `before` (all when None): their shards are done with."""
        for e in [e for e in self._epochs if before is None or e < before]:
            self._epochs.pop(e)[1].__exit__(None, None, None)

    def _where(self, offset: int) -> tuple[int, int]:
        """(epoch, position) of the window `offset` windows after the cursor."""
        e, j = self.cursor.epoch, self.cursor.position + offset
        while not self._epoch(e).exists(j):
            n = self._epoch(e).size()
            if n == 0:
                raise ValueError(f"mixture source {self.ds.index_uri} has no windows in epoch {e}")
            e, j = e + 1, j - n
        return e, j

    def read(self, offset: int, count: int) -> Windows:
        """The `count` windows from `offset` after the cursor, across an epoch's end if need be."""
        parts = []
        while count:
            e, j = self._where(offset)
            ep = self._epoch(e)
            n = count if ep.exists(j + count - 1) else ep.size() - j
            parts.append(ep.read(j, n))
            offset, count = offset + n, count - n
        p = self.ds.packing
        return concat(parts, p.seq_len, p.dtype)

    def advance(self, n: int) -> None:
        e, j = self._where(n)
        gen = self.cursor.generation if e == self.cursor.epoch else (
            self.ds.generation.to_json() if self.ds.generation else None)
        self.cursor = Cursor(e, j, self._epoch(e).anchor(j), gen)
        self.close(before=e)


class TokenMixture(IterableDataset):
    """Interleave windows of several datasets with the given weights (one tokenizer for all)."""

    def __init__(self, sources: Sequence[tuple[str | TokenDataset, float]], seq_len: int, *, seed: int = 0,
                 schedule: Sequence[tuple[int, Sequence[float]]] | None = None, **dataset_kwargs: Any) -> None:
        if not sources:
            raise ValueError("a mixture needs at least one (index, weight) source")
        self.datasets = [s if isinstance(s, TokenDataset) else TokenDataset(s, seq_len, seed=seed, **dataset_kwargs)
                         for s, _ in sources]
        self.weights = [float(w) for _, w in sources]
        _check_sources(self.datasets, self.weights, seq_len)
        self.seed = seed
        self.schedule = _check_schedule(schedule or [], len(self.datasets))
        first = self.datasets[0]
        self.rank, self.world_size, self.batch_size, self.layout = (first.rank, first.world_size, first.batch_size,
                                                                     first.layout)
        self._pending: MixStart | None = None
        self._live: dict[str, Any] | None = None
        self._refusal: StateError | None = None

    @property
    def global_batch(self) -> int:
        return self.world_size * (self.batch_size or 1)

    def weights_at(self, step: int) -> list[float]:
        """The weights in force at global step `step` (the last schedule entry at or before it)."""
        current = self.weights
        for at, weights in self.schedule:
            if at <= step:
                current = weights
        return current

    def choices(self, position: int, step: int, count: int) -> np.ndarray:
        """The source of each mixed position position .. position + count - 1 (all in global step `step`)."""
        chunks = range(position // _CHUNK, (position + count - 1) // _CHUNK + 1)
        u = np.concatenate([np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, c]))).random(_CHUNK)
                            for c in chunks])[position % _CHUNK:position % _CHUNK + count]
        cum = np.cumsum(self.weights_at(step))
        return np.searchsorted(cum / cum[-1], u, side="right").clip(0, len(self.datasets) - 1)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.windows(worker, num_workers)

    def windows(self, worker: int = 0, num_workers: int = 1) -> Iterator[dict[str, torch.Tensor]]:
        """The endless mixed stream of DataLoader worker `worker` of `num_workers` of this rank."""
        if num_workers > 1 and self.batch_size is None:
            raise ValueError("with DataLoader workers give the mixture's sources batch_size (windows per rank per "
                             "step) and the DataLoader batch_size=None")
        if self._refusal is not None:
            raise self._refusal
        start, self._pending, self._live = self._pending or self._fresh(), None, None
        owned = get_worker_info() is not None
        with ExitStack() as stack:
            sources = [_Source(ds, c) for ds, c in zip(self.datasets, start.cursors)]
            for s in sources:
                stack.callback(s.close)
            first = worker if start.skip is None else start.skip
            position, step, k, done = start.position, start.step, 0, start.worker_steps
            while True:
                picks = self.choices(position, step, self.global_batch)
                if k >= first and (k - first) % num_workers == 0:
                    w = self._slice(sources, picks)
                    done += 1
                self._advance(sources, picks)
                position, step = position + self.global_batch, step + 1
                if k >= first and (k - first) % num_workers == 0:
                    self._live = self._state(position, step, sources, start, worker, num_workers, done)
                    yield from self.datasets[0]._items(w, owned)
                k += 1

    def _slice(self, sources: list[_Source], picks: np.ndarray) -> Windows:
        """This rank's windows of one global batch: each source's next windows, in pick order."""
        size, lo = self.batch_size or 1, self.rank * (self.batch_size or 1)
        before = np.bincount(picks[:lo], minlength=len(sources))
        mine = picks[lo:lo + size]
        p = self.datasets[0].packing
        out = empty(size, p.seq_len, p.pad_id, p.dtype)
        for s in np.unique(mine).tolist():
            where = np.flatnonzero(mine == s)
            got = sources[s].read(int(before[s]), len(where))
            out.inputs[where], out.labels[where], out.starts[where] = got.inputs, got.labels, got.starts
        return out

    @staticmethod
    def _advance(sources: list[_Source], picks: np.ndarray) -> None:
        for s, n in enumerate(np.bincount(picks, minlength=len(sources)).tolist()):
            sources[s].advance(n)

    # --- state -----------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        return {"seed": self.seed, "weights": self.weights, "sources": [ds.identity for ds in self.datasets],
                "configs": [ds.config() for ds in self.datasets]}

    def _fresh(self) -> MixStart:
        cursors = tuple(Cursor(ds.epoch, 0, (0, 0), ds.generation.to_json() if ds.generation else None)
                        for ds in self.datasets)
        return MixStart(0, 0, cursors)

    def _state(self, position: int, step: int, sources: list[_Source] | None, start: MixStart, worker: int,
               num_workers: int, worker_steps: int) -> dict[str, Any]:
        cursors = [s.cursor for s in sources] if sources is not None else list(start.cursors)
        return {"format": MIXTURE_FORMAT, "version": STATE_VERSION, **self.identity(),
                "schedule": [[at, list(w)] for at, w in self.schedule if at <= step],
                "position": position, "step": step, "cursors": [c.to_json() for c in cursors],
                "layout": {"world_size": self.world_size, "batch_size": self.batch_size or 1,
                           "num_workers": num_workers, "worker": worker, "rank": self.rank,
                           "pass_start": start.pass_start if start.skip is not None else start.position,
                           "worker_steps": worker_steps}}

    def state_dict(self) -> dict[str, Any]:
        """The mixed position, the step and every source's position (the same on every rank)."""
        if self._live is not None:
            return self._live
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        start = self._pending or self._fresh()
        return self._state(start.position, start.step, None, start, worker, num_workers, start.worker_steps)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at `state` (ours or a StatefulDataLoader's) on any layout; refuses another mixture."""
        saved, since = unwrap(state, MIXTURE_FORMAT)
        check_fields({k: saved.get(k) for k in self.identity()}, self.identity(), "mixture")
        check_fields({"schedule": saved.get("schedule")},
                     {"schedule": [[at, list(w)] for at, w in self.schedule if at <= saved["step"]]}, "curriculum")
        cursors = tuple(Cursor(int(c["epoch"]), int(c["position"]), tuple(int(a) for a in c["anchor"]),
                               c.get("generation")) for c in saved["cursors"])
        start = MixStart(int(saved["position"]), int(saved["step"]), cursors)
        info = get_worker_info()
        if info is not None:  # a StatefulDataLoader restoring this worker's own state
            lay = saved["layout"]
            try:  # raised by the pass: an exception in a worker's start-up stalls its DataLoader's shutdown
                check_worker_restore(saved, {"world_size": self.world_size, "batch_size": self.batch_size or 1,
                                             "num_workers": info.num_workers}, info.id)
            except StateError as exc:
                self._refusal = exc
                return
            steps = int(lay["worker_steps"])  # after this worker's last global batch the others made the next
            start = replace(start, skip=info.num_workers - 1 if steps else info.id, pass_start=lay["pass_start"],
                            worker_steps=steps)
        elif since:
            start = self._skip_steps(start, since, saved["layout"]["world_size"] * saved["layout"]["batch_size"])
        self._pending, self._live = start, None

    def _skip_steps(self, start: MixStart, steps: int, global_batch: int) -> MixStart:
        """The start `steps` global batches (of the saver's size) later: choices drawn, nothing read."""
        position, step = start.position, start.step
        with ExitStack() as stack:
            sources = [_Source(ds, c) for ds, c in zip(self.datasets, start.cursors)]
            for s in sources:
                stack.callback(s.close)
            for _ in range(steps):
                self._advance(sources, self.choices(position, step, global_batch))
                position, step = position + global_batch, step + 1
            return MixStart(position, step, tuple(s.cursor for s in sources))


def _check_schedule(schedule: Sequence[tuple[int, Sequence[float]]], n: int) -> list[tuple[int, list[float]]]:
    """(step, weights) entries: steps >= 0, increasing; weights >= 0, one per source, not all zero."""
    out, last = [], -1
    for at, weights in schedule:
        w = [float(x) for x in weights]
        if not isinstance(at, int) or at <= last:
            raise ValueError(f"schedule steps must be increasing integers >= 0, got {at!r} after {last}")
        if len(w) != n or any(x < 0 for x in w) or sum(w) <= 0:
            raise ValueError(f"schedule weights at step {at} must be {n} numbers >= 0, not all 0, got {list(weights)}")
        out.append((at, w))
        last = at
    return out


def _check_sources(datasets: list[TokenDataset], weights: list[float], seq_len: int) -> None:
    """Sources must agree on what a window and a global batch are; weights must be positive."""
    if any(not w > 0 for w in weights):
        raise ValueError(f"mixture weights must be > 0, got {weights}")
    fingerprints = {ds.index.tokenizer_fingerprint for ds in datasets}
    if len(fingerprints) > 1:
        raise ValueError("mixture sources were tokenized with different tokenizers: "
                         + ", ".join(f"{ds.index_uri} ({ds.index.tokenizer_fingerprint[:12]})" for ds in datasets))
    first = datasets[0]
    for ds in datasets:
        got = (ds.seq_len, ds.rank, ds.world_size, ds.batch_size, ds.layout)
        want = (seq_len, first.rank, first.world_size, first.batch_size, first.layout)
        if got != want:
            raise ValueError(f"mixture source {ds.index_uri} has seq_len/rank/world_size/batch_size/layout {got}, "
                             f"expected {want}: the same for all sources")


__all__ = ["TokenMixture", "StateError"]
