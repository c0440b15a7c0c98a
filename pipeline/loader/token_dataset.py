"""Training-side reader: a PyTorch IterableDataset whose order does not depend on the cluster.

Each epoch is one global sequence of packed windows (pipeline.loader.epoch), a function of the
dataset, the seed and the epoch alone. A global batch is `world_size * batch_size` consecutive
windows of it; rank r takes the r-th `batch_size` of them and DataLoader worker w makes every
num_workers-th global batch (pipeline.loader.split). The state is the global position (windows
consumed by all ranks together), so a state saved on any rank resumes on any world size, batch
size or worker count, and the union of what the new ranks read continues the same sequence.
Where the windows left in an epoch are fewer than a global batch, they are dropped (or, with
last_batch="pad", the batch is filled with padding). Never imports ray.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.loader.batch import LAYOUTS, arrays
from pipeline.loader.cache import ShardCache
from pipeline.loader.epoch import Epoch
from pipeline.loader.follow import Generation, latest, rebuild
from pipeline.loader.index import OpenIndex, ShardError, ShardMissing, load_index
from pipeline.loader.pack import IGNORE_INDEX, Windows
from pipeline.loader.plan import MODES, Packing, PlanBook
from pipeline.loader.split import Order
from pipeline.loader.state import (STATE_FORMAT, STATE_VERSION, StateError, check_fields, check_worker_restore,
                                   unwrap)

log = logging.getLogger(__name__)

LAST_BATCH = ("drop", "pad")
__all__ = ["TokenDataset", "ShardError", "ShardMissing", "StateError", "IGNORE_INDEX", "cu_seqlens",
           "expand_compact"]


@dataclass(frozen=True)
class Start:
    """Where a pass begins: the global position (and step) at a global batch boundary, the epoch's
    anchor and generation, and, for a worker restored by a StatefulDataLoader, its own progress."""

    epoch: int
    position: int
    step: int
    anchor: tuple[int, int]
    index: OpenIndex
    generation: Generation | None
    skip: int | None = None  # global batches before this worker's first; None: its worker id
    pass_start: int = 0
    worker_steps: int = 0


class TokenDataset(IterableDataset):
    """Packed, shuffled windows of a tokenmill dataset in one global order; resumable on any layout."""

    def __init__(self, index: str, seq_len: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True, epoch: int = 0, storage_options: dict[str, Any] | None = None,
                 mode: str = "pack", shuffle_buffer: int = 4096, interleave: int = 8, expand_dynamic: bool = False,
                 on_missing: str = "error", drop_last: bool = False, prefetch: int = 2,
                 batch_size: int | None = None, layout: str = "windows", last_batch: str = "drop",
                 follow: bool = False, settle_s: float = 30.0, epoch_steps: int | None = None) -> None:
        _check_args(seq_len, rank, world_size, mode, shuffle_buffer, on_missing, interleave)
        _check_batching(batch_size, layout, last_batch, epoch_steps)
        self.index_uri, self.storage_options = index, storage_options
        self.seq_len, self.rank, self.world_size = seq_len, rank, world_size
        self.seed, self.shuffle, self.epoch, self.mode = seed, shuffle, epoch, mode
        self.shuffle_buffer, self.interleave, self.expand_dynamic = shuffle_buffer, interleave, expand_dynamic
        self.drop_last, self.prefetch, self.batch_size, self.layout = drop_last, prefetch, batch_size, layout
        self.last_batch, self.follow, self.settle_s, self.epoch_steps = last_batch, follow, settle_s, epoch_steps
        self.on_missing = on_missing
        self.index: OpenIndex = load_index(index, storage_options)
        if layout == "compact" and (self.index.vocab_size or 0) > 2**31:
            raise ValueError(f"layout='compact' holds token ids as int32; this vocabulary has "
                             f"{self.index.vocab_size} ids: use layout='windows'")
        self.eos_id = self.index.eos_id
        self.pad_id = self.eos_id if self.eos_id is not None else 0
        self.packing = Packing(seq_len, mode, self.eos_id, self.pad_id, drop_last, expand_dynamic, shuffle_buffer,
                               np.int32 if layout == "compact" else np.int64)
        self.book = PlanBook(self.packing)
        self.generation: Generation | None = None
        self._generation_epoch = epoch
        if follow:
            self._use(*latest(self.index.folder, self.index.record, settle_s))
        elif on_missing == "skip":
            self.index = _skip_missing(self.index)
        self._pending: Start | None = None
        self._live: dict[str, Any] | None = None
        self._ended_epoch: int | None = None  # a loaded state was at this epoch's end
        self._refusal: StateError | None = None  # a worker's restored state that does not fit here

    # --- the dataset ---------------------------------------------------------------------------
    @property
    def identity(self) -> str:
        """What a state must come from: the shards (a fixed dataset) or the name and tokenizer (followed)."""
        return self.index.identity if self.follow else self.index.fingerprint

    def config(self) -> dict[str, Any]:
        """Settings that change the global order; a state only resumes under the same ones."""
        return {"seq_len": self.seq_len, "mode": self.mode, "seed": self.seed, "shuffle": self.shuffle,
                "shuffle_buffer": self.shuffle_buffer, "interleave": self.interleave,
                "expand_dynamic": self.expand_dynamic, "drop_last": self.drop_last, "eos_id": self.eos_id,
                "pad_id": self.pad_id, "follow": self.follow}

    def latest_generation(self) -> dict[str, Any]:
        """follow: the newest generation committed now (give it to every rank's set_epoch)."""
        return latest(self.index.folder, self.index.record, self.settle_s)[0].to_json()

    def _use(self, generation: Generation, shards: tuple) -> None:
        self.generation, self.index = generation, self.index.with_shards(shards)

    def set_epoch(self, epoch: int, generation: dict[str, Any] | None = None) -> None:
        """The epoch of the next pass (call it each epoch, on every rank). With follow, the epoch reads
        `generation` (from latest_generation(), the same on every rank), else the newest one now."""
        if self._pending is not None and self._pending.epoch != epoch and epoch != self._ended_epoch:
            self._pending = None
        if self._live is not None and self._live["epoch"] != epoch:
            self._live = None
        self.epoch = epoch
        if self.follow and self._pending is None:
            if generation is not None:
                self._use_saved(Generation.from_json(generation))
            elif self._generation_epoch != epoch:
                self._use(*latest(self.index.folder, self.index.record, self.settle_s))
            self._generation_epoch = epoch

    def _use_saved(self, generation: Generation) -> None:
        if generation != self.generation:
            shards = rebuild(self.index.folder, self.index.record, generation)
            if shards is None:
                raise StateError(f"generation {generation.to_json()} cannot be rebuilt from the ledger of "
                                 f"{self.index_uri}: a shard of it was replaced or removed since")
            self._use(generation, shards)

    # --- a pass ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.windows(worker, num_workers)

    def windows(self, worker: int = 0, num_workers: int = 1) -> Iterator[dict[str, torch.Tensor]]:
        """The rest of an epoch as seen by DataLoader worker `worker` of `num_workers` of this rank:
        its slices (single windows, or batches when batch_size is set) of its global batches."""
        if num_workers > 1 and self.batch_size is None:
            raise ValueError("with DataLoader workers give the dataset batch_size (windows per rank per step) and "
                             "the DataLoader batch_size=None: a DataLoader collating single windows from several "
                             "workers takes them out of the global order")
        if self._refusal is not None:
            raise self._refusal
        if self._ended_epoch is not None and self.epoch == self._ended_epoch:
            log.warning("epoch %d was complete in the loaded state: nothing left of it; the next pass reads epoch %d",
                        self.epoch, self.epoch + 1)
            self.epoch, self._ended_epoch = self.epoch + 1, None
            return
        start = self._take_start()
        size = self.batch_size or 1
        owned = get_worker_info() is not None
        with self.cache(start.index) as cache:
            ep = self.open_epoch(start.epoch, start.index, start.anchor, cache)
            if start.skip is None and start.position == 0 and not self._has_step(ep, 0, start.step):
                raise ValueError(self._empty_epoch(ep, start.epoch))
            k, done = (worker if start.skip is None else start.skip), start.worker_steps
            while self._has_step(ep, start.position + k * self.global_batch, start.step + k):
                g = start.position + k * self.global_batch
                w = ep.read(g + self.rank * size, size)
                done += 1
                self._live = self._state(start, g + self.global_batch, start.step + k + 1,
                                         ep.anchor(g + self.global_batch), worker, num_workers, done)
                yield from self._items(w, owned)
                k += num_workers
        self.epoch = start.epoch + 1

    @property
    def global_batch(self) -> int:
        return self.world_size * (self.batch_size or 1)

    def cache(self, index: OpenIndex) -> ShardCache:
        return ShardCache(index, keep=self.interleave + 1, prefetch=self.prefetch)

    def open_epoch(self, epoch: int, index: OpenIndex, anchor: tuple[int, int], cache: ShardCache) -> Epoch:
        return Epoch(index.shards, self.book, cache, Order(self.seed, epoch, self.shuffle), self.interleave, anchor)

    def _has_step(self, ep: Epoch, g: int, step: int) -> bool:
        """Whether a global batch starts at g: within epoch_steps, and whole (or padded, last_batch='pad')."""
        if self.epoch_steps is not None and step >= self.epoch_steps:
            return False
        return ep.exists(g if self.last_batch == "pad" else g + self.global_batch - 1)

    def _empty_epoch(self, ep: Epoch, epoch: int) -> str:
        n = ep.size()
        if not self.index.shards:
            return f"epoch {epoch} of {self.index_uri} has no shards (follow: none committed yet)"
        return (f"epoch {epoch} of {self.index_uri} has {n} windows, fewer than one global batch "
                f"(world_size {self.world_size} x batch_size {self.batch_size or 1}): nothing to yield; use "
                f"last_batch='pad' or a smaller batch")

    def _items(self, w: Windows, owned: bool) -> Iterator[dict[str, torch.Tensor]]:
        if self.batch_size is not None:
            yield {k: torch.from_numpy(v) for k, v in arrays(w, self.layout, owned).items()}
            return
        yield {"input_ids": torch.from_numpy(w.inputs[0]), "labels": torch.from_numpy(w.labels[0]),
               "position_ids": torch.from_numpy(w.position_ids()[0])}

    # --- state -----------------------------------------------------------------------------------
    def _fresh(self) -> Start:
        if self.follow and self._generation_epoch != self.epoch:
            self._use(*latest(self.index.folder, self.index.record, self.settle_s))
            self._generation_epoch = self.epoch
        return Start(self.epoch, 0, 0, (0, 0), self.index, self.generation)

    def _take_start(self) -> Start:
        start, self._pending, self._ended_epoch = self._pending, None, None
        self._live = None
        return start if start is not None else self._fresh()

    def _state(self, start: Start, position: int, step: int, anchor: tuple[int, int], worker: int,
               num_workers: int, worker_steps: int) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "dataset": self.identity, "config": self.config(),
                "epoch": start.epoch, "position": position, "step": step, "anchor": [int(a) for a in anchor],
                "generation": start.generation.to_json() if start.generation else None,
                "layout": {**self._layout(num_workers), "worker": worker, "rank": self.rank,
                           "pass_start": start.pass_start if start.skip is not None else start.position,
                           "worker_steps": worker_steps}}

    def _layout(self, num_workers: int) -> dict[str, Any]:
        return {"world_size": self.world_size, "batch_size": self.batch_size or 1, "num_workers": num_workers}

    def state_dict(self) -> dict[str, Any]:
        """The global position: the same on every rank at the same step. Through a StatefulDataLoader,
        save the loader's state_dict() (it holds this for each worker)."""
        if self._live is not None:
            return self._live
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        start = self._pending if self._pending is not None else self._fresh()
        return self._state(start, start.position, start.step, start.anchor, worker, num_workers, start.worker_steps)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at `state`: ours or a StatefulDataLoader's, saved on any rank, world size, batch size
        or worker count. Refuses a state of another dataset or settings, naming the field."""
        saved, since = unwrap(state, STATE_FORMAT)
        check_state(saved, self)
        self._ended_epoch = None
        info = get_worker_info()
        if info is not None:  # a StatefulDataLoader restoring this worker's own state
            self._restore_worker(saved, info.id, info.num_workers)
            return
        start = self._saved_start(saved)
        if start is not None:
            g = saved["layout"]["world_size"] * saved["layout"]["batch_size"]
            start = replace(start, position=start.position + since * g, step=start.step + since)
            start = self._past_end(start)
        self._pending = start if start is not None else self._next_epoch(int(saved["epoch"]))
        self._live = None
        self.epoch = self._pending.epoch
        self._generation_epoch = self.epoch

    def _saved_start(self, saved: dict[str, Any]) -> Start | None:
        """The Start a saved state names, or None when its generation can no longer be rebuilt."""
        generation, index = None, self.index
        if self.follow:
            generation = Generation.from_json(saved["generation"])
            if generation != self.generation:
                shards = rebuild(self.index.folder, self.index.record, generation)
                if shards is None:
                    log.warning("the saved generation %s of %s cannot be rebuilt: a shard of it was replaced or "
                                "removed by a rerun since; the rest of epoch %s is skipped, epoch %s starts on the "
                                "newest generation", generation.to_json(), self.index_uri, saved["epoch"],
                                int(saved["epoch"]) + 1)
                    return None
                index = self.index.with_shards(shards)
        anchor = tuple(int(a) for a in saved["anchor"])
        return Start(int(saved["epoch"]), int(saved["position"]), int(saved["step"]), anchor, index, generation)

    def _past_end(self, start: Start) -> Start:
        """A position with no global batch left starts the next epoch (said in the log, never an empty pass)."""
        with self.cache(start.index) as cache:
            ep = self.open_epoch(start.epoch, start.index, start.anchor, cache)
            if self._has_step(ep, start.position, start.step):
                return start
        log.info("loader state is at the end of epoch %d (position %d): starting epoch %d", start.epoch,
                 start.position, start.epoch + 1)
        self._ended_epoch = start.epoch
        return self._next_epoch(start.epoch)

    def _next_epoch(self, epoch: int) -> Start:
        self.epoch = epoch + 1
        return self._fresh()

    def _restore_worker(self, saved: dict[str, Any], worker: int, num_workers: int) -> None:
        """Continue this worker's own global batches; a refusal is raised by the pass (an exception in a
        worker's start-up keeps its DataLoader from shutting down for seconds)."""
        try:
            check_worker_restore(saved, self._layout(num_workers), worker)
        except StateError as exc:
            self._refusal = exc
            return
        start = self._saved_start(saved)
        if start is None:
            raise StateError("the saved generation cannot be rebuilt; resume with ds.load_state_dict(state)")
        steps, lay = int(saved["layout"]["worker_steps"]), saved["layout"]
        if steps:  # continue after this worker's last global batch: the others made the next ones
            start = replace(start, skip=num_workers - 1, pass_start=lay["pass_start"], worker_steps=steps)
        else:
            start = replace(start, skip=worker, pass_start=lay["pass_start"])
        self._pending = start
        self.epoch = start.epoch


def check_state(state: dict[str, Any], ds: TokenDataset) -> None:
    """Raise StateError naming the first field that keeps `state` from resuming `ds`."""
    if state.get("dataset") != ds.identity:
        raise StateError(f"loader state is from another dataset: dataset: saved {state.get('dataset')!r}, now "
                         f"{ds.identity!r} ({ds.index_uri})")
    check_fields(state.get("config", {}), ds.config(), "setting")


def cu_seqlens(position_ids: torch.Tensor) -> torch.Tensor:
    """Cumulative document lengths (int32) of a flattened batch, for varlen attention kernels."""
    flat = position_ids.reshape(-1)
    starts = torch.nonzero(flat == 0).flatten()
    return torch.cat([starts, torch.tensor([flat.numel()], device=flat.device)]).to(torch.int32)


def expand_compact(batch: dict[str, torch.Tensor], pad_id: int) -> dict[str, torch.Tensor]:
    """The windows layout (int64 input_ids, labels, position_ids) of a compact batch, on its device;
    `pad_id` is the dataset's (`TokenDataset.pad_id`)."""
    tokens, cu = batch["tokens"].long(), batch["cu_seqlens"].long()
    labels = tokens[:, 1:].contiguous()
    inputs = tokens[:, :-1].masked_fill(labels == IGNORE_INDEX, pad_id)
    flat = torch.arange(labels.numel(), device=tokens.device)
    positions = flat - torch.repeat_interleave(cu[:-1], cu.diff())
    return {"input_ids": inputs, "labels": labels, "position_ids": positions.view_as(labels)}


def _check_batching(batch_size: int | None, layout: str, last_batch: str, epoch_steps: int | None) -> None:
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be None (one window per item) or an integer >= 1, got {batch_size!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "compact" and batch_size is None:
        raise ValueError("layout='compact' is a batch layout: set batch_size too "
                         "(and DataLoader(ds, batch_size=None))")
    if last_batch not in LAST_BATCH:
        raise ValueError(f"last_batch must be one of {LAST_BATCH}, got {last_batch!r}")
    if epoch_steps is not None and (not isinstance(epoch_steps, int) or epoch_steps < 1):
        raise ValueError(f"epoch_steps must be None or an integer >= 1, got {epoch_steps!r}")


def _check_args(seq_len: int, rank: int, world_size: int, mode: str, shuffle_buffer: int, on_missing: str,
                interleave: int) -> None:
    """Fail at build time with the fix, not mid-epoch."""
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be an integer >= 1, got {seq_len!r}")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be >= 1 document, got {shuffle_buffer!r}")
    if not isinstance(interleave, int) or interleave < 1:
        raise ValueError(f"interleave must be an integer >= 1 (shards read together), got {interleave!r}")
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")


def _skip_missing(index: OpenIndex) -> OpenIndex:
    """Drop shards whose file is gone, with a warning naming them (on_missing='skip')."""
    missing = {s.name for s in index.shards if not index.fs.exists(s.path)}
    for name in sorted(missing):
        log.warning("shard %s is missing; skipped (on_missing='skip')", name, extra={"shard": name})
    return index.without(missing)
