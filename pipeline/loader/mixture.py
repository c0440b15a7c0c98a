"""Weighted mixtures of tokenmill datasets, deterministic and exactly resumable.

Window n of a consumer comes from source `choice(n)`, drawn from the weights by a
generator keyed on (seed, consumer, n // 4096): a pure function of the step, so a resume
needs only the step count and each source's own loader state. Sources cycle: when one
finishes an epoch it starts its next one, so weights hold over any number of steps (the
stream is endless; stop after the number of steps you train for).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.loader.token_dataset import StateError, TokenDataset

MIXTURE_FORMAT = "tokenmill.mixture"
MIXTURE_VERSION = 1
_CHUNK = 4096


class TokenMixture(IterableDataset):
    """Interleave windows of several datasets with the given weights (one tokenizer for all)."""

    def __init__(self, sources: Sequence[tuple[str | TokenDataset, float]], seq_len: int, *, seed: int = 0,
                 **dataset_kwargs: Any) -> None:
        if not sources:
            raise ValueError("a mixture needs at least one (index, weight) source")
        self.datasets = [s if isinstance(s, TokenDataset) else TokenDataset(s, seq_len, seed=seed, **dataset_kwargs)
                         for s, _ in sources]
        self.weights = [float(w) for _, w in sources]
        _check_sources(self.datasets, self.weights, seq_len)
        self.seed = seed
        self._cum = np.cumsum(self.weights) / sum(self.weights)
        self._step = 0
        self._pending: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.windows(worker, num_workers)

    def windows(self, worker: int = 0, num_workers: int = 1) -> Iterator[dict[str, torch.Tensor]]:
        """The endless mixed stream of DataLoader worker `worker` of `num_workers`."""
        step = self._start(worker, num_workers)
        consumer = self.datasets[0].rank * num_workers + worker
        sources = [_cycle(ds, worker, num_workers) for ds in self.datasets]
        chunk, choices = -1, np.empty(0, dtype=np.int64)
        while True:
            if step // _CHUNK != chunk:
                chunk, choices = step // _CHUNK, self._choices(consumer, num_workers, step // _CHUNK)
            sample = next(sources[choices[step % _CHUNK]])
            step += 1
            self._step = step
            yield sample

    def _choices(self, consumer: int, num_workers: int, chunk: int) -> np.ndarray:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
            [self.seed, consumer, num_workers, chunk])))
        return np.searchsorted(self._cum, rng.random(_CHUNK), side="right").clip(0, len(self.weights) - 1)

    def state_dict(self) -> dict[str, Any]:
        """Step count and every source's position (call where batches are consumed)."""
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return {"format": MIXTURE_FORMAT, "version": MIXTURE_VERSION, "seed": self.seed, "weights": self.weights,
                "worker": worker, "num_workers": num_workers, "step": self._step,
                "sources": [ds.state_dict() for ds in self.datasets]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at `state`; refuses another mixture (weights, seed, sources) or format."""
        if not isinstance(state, dict) or state.get("format") != MIXTURE_FORMAT:
            raise StateError("not a tokenmill mixture state (missing format 'tokenmill.mixture')")
        if state.get("version") != MIXTURE_VERSION:
            raise StateError(f"mixture state format version {state.get('version')!r} is not supported: "
                             f"this loader reads version {MIXTURE_VERSION}")
        if state.get("weights") != self.weights or state.get("seed") != self.seed:
            raise StateError(f"mixture state has weights {state.get('weights')} and seed {state.get('seed')}, "
                             f"this mixture has {self.weights} and {self.seed}")
        if len(state.get("sources", [])) != len(self.datasets):
            raise StateError(f"mixture state has {len(state.get('sources', []))} sources, this mixture "
                             f"has {len(self.datasets)}")
        for ds, sub in zip(self.datasets, state["sources"]):
            ds.load_state_dict(sub)
        self._pending = dict(state)

    def _start(self, worker: int, num_workers: int) -> int:
        state, self._pending = self._pending, None
        if state is None:
            return 0
        if (state["worker"], state["num_workers"]) != (worker, num_workers):
            raise StateError(f"mixture state was saved by worker {state['worker']} of {state['num_workers']}, "
                             f"it is being loaded by worker {worker} of {num_workers}: keep num_workers")
        return int(state["step"])


def _cycle(ds: TokenDataset, worker: int, num_workers: int) -> Iterator[dict[str, torch.Tensor]]:
    """A source's windows, epoch after epoch; refuses a source with nothing for this consumer."""
    empty_passes = 0
    while empty_passes < 2:
        n = 0
        for n, sample in enumerate(ds.windows(worker, num_workers), 1):
            yield sample
        empty_passes = 0 if n else empty_passes + 1
    raise ValueError(f"mixture source {ds.index_uri} has no windows for worker {worker} of {num_workers} "
                     f"on rank {ds.rank}: it has fewer documents than consumers")


def _check_sources(datasets: list[TokenDataset], weights: list[float], seq_len: int) -> None:
    """Sources must agree on what a window is; weights must be positive."""
    if any(not w > 0 for w in weights):
        raise ValueError(f"mixture weights must be > 0, got {weights}")
    if any(ds.batch_size is not None for ds in datasets):
        raise ValueError("mixture sources must yield single windows (batch_size=None): the mixture "
                         "interleaves windows; batch them with the DataLoader's batch_size")
    fingerprints = {ds.index.tokenizer_fingerprint for ds in datasets}
    if len(fingerprints) > 1:
        raise ValueError("mixture sources were tokenized with different tokenizers: "
                         + ", ".join(f"{ds.index_uri} ({ds.index.tokenizer_fingerprint[:12]})" for ds in datasets))
    for ds in datasets:
        if (ds.seq_len, ds.rank, ds.world_size) != (seq_len, datasets[0].rank, datasets[0].world_size):
            raise ValueError(f"mixture source {ds.index_uri} has seq_len/rank/world_size "
                             f"{(ds.seq_len, ds.rank, ds.world_size)}, expected {seq_len} and the same rank for all")
