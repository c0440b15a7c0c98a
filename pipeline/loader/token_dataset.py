"""Training-side reader: a resumable, deterministic PyTorch IterableDataset over dataset.json.

Each DataLoader worker of each rank (a consumer) reads its own pieces of the dataset
(loader_split), shuffles inside bounded blocks of documents, packs them into windows of
seq_len + 1 tokens (loader_pack) and yields `input_ids`, `labels` and `position_ids`
(int64, seq_len each), or with `batch_size` whole batches (loader_batch), which is what
makes DataLoader workers fast. Its position is (epoch, document, token), so `state_dict()`
is a few integers and a resume continues with exactly the windows that would have come next.
Never imports ray.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.loader.batch import LAYOUTS, Batch, Batcher
from pipeline.loader.cache import ShardCache
from pipeline.loader.index import OpenIndex, ShardError, ShardMissing, load_index
from pipeline.loader.pack import IGNORE_INDEX, MODES, Packer, Windows
from pipeline.loader.split import Stream, consumer_pieces, epoch_pieces

log = logging.getLogger(__name__)

STATE_FORMAT = "tokenmill.loader"
STATE_VERSION = 1
GROUP_TOKENS = 1 << 19
__all__ = ["TokenDataset", "ShardError", "ShardMissing", "StateError", "IGNORE_INDEX", "cu_seqlens",
           "expand_compact"]


class StateError(ValueError):
    """A loader state that cannot be resumed here; the message names the mismatch."""


class TokenDataset(IterableDataset):
    """Packed, shuffled, exactly resumable windows of tokens from a tokenmill dataset."""

    def __init__(self, index: str, seq_len: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True, epoch: int = 0, storage_options: dict[str, Any] | None = None,
                 mode: str = "pack", shuffle_buffer: int = 4096, expand_dynamic: bool = False,
                 on_missing: str = "error", drop_last: bool = False, prefetch: int = 2,
                 batch_size: int | None = None, layout: str = "windows") -> None:
        _check_args(seq_len, rank, world_size, mode, shuffle_buffer, on_missing)
        _check_batching(batch_size, layout)
        self.index_uri, self.storage_options = index, storage_options
        self.seq_len, self.rank, self.world_size = seq_len, rank, world_size
        self.seed, self.shuffle, self.epoch, self.mode = seed, shuffle, epoch, mode
        self.shuffle_buffer, self.expand_dynamic, self.drop_last = shuffle_buffer, expand_dynamic, drop_last
        self.prefetch, self.batch_size, self.layout = prefetch, batch_size, layout
        self.index: OpenIndex = load_index(index, storage_options)
        if on_missing == "skip":
            self.index = _skip_missing(self.index)
        if layout == "compact" and (self.index.vocab_size or 0) > 2**31:
            raise ValueError(f"layout='compact' holds token ids as int32; this vocabulary has "
                             f"{self.index.vocab_size} ids: use layout='windows'")
        self.eos_id = self.index.eos_id
        self.pad_id = self.eos_id if self.eos_id is not None else 0
        self._pending: dict[str, Any] | None = None
        self._live: tuple[int, int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next pass (call it each epoch); a loaded state for another epoch is dropped."""
        if self._pending is not None and self._pending["epoch"] != epoch:
            self._pending = None
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.windows(worker, num_workers)

    def windows(self, worker: int = 0, num_workers: int = 1) -> Iterator[dict[str, torch.Tensor]]:
        """One pass (the rest of an epoch) as seen by DataLoader worker `worker` of `num_workers`:
        windows, or batches of them when batch_size is set."""
        consumer, consumers = self.rank * num_workers + worker, self.world_size * num_workers
        epoch, doc, tok = self._start(worker, num_workers)
        stream = self.stream(epoch, consumer, consumers)
        packer = Packer(self.seq_len, self.mode, self.eos_id, self.pad_id, self.drop_last,
                        np.int32 if self.layout == "compact" else np.int64)
        owned = get_worker_info() is not None
        batcher = Batcher(self.batch_size, self.layout, owned) if self.batch_size else None
        self._live = (epoch, doc, tok)
        with ShardCache(self.index, keep=2, prefetch=self.prefetch) as cache:
            for docs, first, skip in self._blocks(stream, cache, doc, tok):
                yield from self._emit(packer.feed(docs, first, skip), epoch, batcher)
            yield from self._emit(packer.finish(stream.total), epoch, batcher)
            if batcher is not None:
                yield from self._emit_batches(batcher.flush(), epoch)
        self.epoch = epoch + 1

    def stream(self, epoch: int, consumer: int, consumers: int) -> Stream:
        """The documents one consumer reads in one epoch, in reading order."""
        n_rows = [s.n_samples for s in self.index.shards]
        pieces = consumer_pieces(epoch_pieces(n_rows, consumers, self.seed, epoch, self.shuffle),
                                 consumer, consumers)
        return Stream(pieces, self.shuffle_buffer, self.shuffle, (self.seed, epoch, consumer, consumers))

    def _blocks(self, stream: Stream, cache: ShardCache, doc: int, tok: int) -> Iterator[tuple[list, int, int]]:
        """(documents, stream position of the first, tokens to skip in it), from `doc` on, in groups
        of about GROUP_TOKENS tokens so that packing works in cache-sized pieces."""
        first_block = doc // stream.block
        for b in range(first_block, stream.n_blocks if doc < stream.total else 0):
            docs = self._block_docs(stream, b, cache)
            lo = doc - b * stream.block if b == first_block else 0
            ends = np.cumsum([len(d) for d in docs[lo:]]) // GROUP_TOKENS
            cuts = [0, *(np.flatnonzero(np.diff(ends)) + 1).tolist(), len(docs) - lo]
            for a, z in zip(cuts, cuts[1:]):
                yield docs[lo + a:lo + z], b * stream.block + lo + a, tok if b == first_block and a == 0 else 0

    def _block_docs(self, stream: Stream, b: int, cache: ShardCache) -> list[np.ndarray]:
        docs: list[np.ndarray] = []
        for part in stream.block_rows(b):
            shard = cache.get(part.shard)
            docs.extend(shard.expanded(part.start, part.stop) if self.expand_dynamic
                        else shard.docs(part.start, part.stop))
        cache.prefetch(stream.shards_after(b, self.prefetch))
        return [docs[i] for i in stream.block_order(b).tolist()]

    def _emit(self, w: Windows, epoch: int, batcher: Batcher | None) -> Iterator[dict[str, torch.Tensor]]:
        """Yield windows one by one (or the batches they complete), moving the position before each."""
        if batcher is not None:
            yield from self._emit_batches(batcher.add(w), epoch)
            return
        tensors = (torch.from_numpy(a).unbind(0) for a in (w.inputs, w.labels, w.position_ids()))
        for x, y, pos, doc, tok in zip(*tensors, w.next_doc.tolist(), w.next_tok.tolist()):
            self._live = (epoch, doc, tok)
            yield {"input_ids": x, "labels": y, "position_ids": pos}

    def _emit_batches(self, batches: Iterator[Batch], epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        for b in batches:
            self._live = (epoch, b.next_doc, b.next_tok)
            yield {k: torch.from_numpy(v) for k, v in b.arrays.items()}

    def config(self) -> dict[str, Any]:
        """Settings that change which windows come out; a state only resumes under the same ones."""
        return {"seq_len": self.seq_len, "mode": self.mode, "seed": self.seed, "shuffle": self.shuffle,
                "shuffle_buffer": self.shuffle_buffer, "expand_dynamic": self.expand_dynamic,
                "drop_last": self.drop_last, "eos_id": self.eos_id, "pad_id": self.pad_id}

    def state_dict(self) -> dict[str, Any]:
        """This consumer's position: call it where the batches are consumed (or via StatefulDataLoader)."""
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, doc, tok = self._live if self._live is not None else (self.epoch, 0, 0)
        if self._live is None and self._pending is not None:
            epoch, doc, tok = self._pending["epoch"], self._pending["doc"], self._pending["tok"]
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "dataset": self.index.fingerprint,
                "config": self.config(), "rank": self.rank, "world_size": self.world_size,
                "worker": worker, "num_workers": num_workers, "epoch": epoch, "doc": doc, "tok": tok}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at `state` on the next pass; refuses a state from another dataset, setup or format."""
        check_state(state, self)
        self._pending = dict(state)
        self._live = None
        self.epoch = int(state["epoch"])

    def _start(self, worker: int, num_workers: int) -> tuple[int, int, int]:
        """Where this pass begins: the loaded state (once), else the start of self.epoch."""
        state, self._pending = self._pending, None
        if state is None:
            return self.epoch, 0, 0
        if (state["worker"], state["num_workers"]) != (worker, num_workers):
            raise StateError(f"state was saved by worker {state['worker']} of {state['num_workers']}, "
                             f"it is being loaded by worker {worker} of {num_workers}: resume with the "
                             f"same num_workers (use torchdata's StatefulDataLoader with workers)")
        return int(state["epoch"]), int(state["doc"]), int(state["tok"])


def check_state(state: dict[str, Any], ds: TokenDataset) -> None:
    """Raise StateError naming the first reason `state` cannot resume `ds`."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise StateError("not a tokenmill loader state (missing format 'tokenmill.loader')")
    if state.get("version") != STATE_VERSION:
        raise StateError(f"loader state format version {state.get('version')!r} is not supported: this "
                         f"loader reads version {STATE_VERSION}; start a new epoch instead of resuming")
    if state.get("dataset") != ds.index.fingerprint:
        raise StateError(f"loader state is from another dataset (fingerprint {state.get('dataset')}, "
                         f"this one is {ds.index.fingerprint}: {ds.index_uri})")
    diffs = [f"{k}: saved {v!r}, now {ds.config().get(k)!r}"
             for k, v in state.get("config", {}).items() if ds.config().get(k) != v]
    if diffs:
        raise StateError("loader state was saved with other settings: " + "; ".join(diffs))
    if (state.get("world_size"), state.get("rank")) != (ds.world_size, ds.rank):
        raise StateError(f"loader state is from rank {state.get('rank')} of world_size "
                         f"{state.get('world_size')}, this is rank {ds.rank} of {ds.world_size}: resuming "
                         f"with another world size is not supported (the split over ranks would change); "
                         f"resume with world_size={state.get('world_size')} or start the next epoch fresh")


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


def _check_batching(batch_size: int | None, layout: str) -> None:
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be None (one window per item) or an integer >= 1, got {batch_size!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "compact" and batch_size is None:
        raise ValueError("layout='compact' is a batch layout: set batch_size too "
                         "(and DataLoader(ds, batch_size=None))")


def _check_args(seq_len: int, rank: int, world_size: int, mode: str, shuffle_buffer: int, on_missing: str) -> None:
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
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")


def _skip_missing(index: OpenIndex) -> OpenIndex:
    """Drop shards whose file is gone, with a warning naming them (on_missing='skip')."""
    missing = {s.name for s in index.shards if not index.fs.exists(s.path)}
    for name in sorted(missing):
        log.warning("shard %s is missing; skipped (on_missing='skip')", name, extra={"shard": name})
    return index.without(missing)
