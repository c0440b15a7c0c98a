"""Open shards for one consumer: a few at a time, the next ones prefetched when remote.

Memory holds at most `keep` opened shards plus `prefetch` in flight: local shards are
memory maps (their pages come and go with the page cache), remote ones are read whole in a
background thread while the current one is being consumed.
"""
from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

from pipeline.loader.index import OpenIndex, ShardData, open_shard


class ShardCache:
    """Shard number -> opened shard, least recently used evicted; a context manager."""

    def __init__(self, index: OpenIndex, keep: int = 2, prefetch: int = 1) -> None:
        self.index = index
        self.keep = keep
        self.prefetch_n = 0 if index.local else prefetch
        self._open: OrderedDict[int, ShardData] = OrderedDict()
        self._inflight: dict[int, Future] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="tokenmill-prefetch") if self.prefetch_n else None

    def __enter__(self) -> "ShardCache":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._open.clear()
        self._inflight.clear()

    def get(self, shard: int) -> ShardData:
        """The opened shard, from the cache, from a prefetch in flight, or opened now."""
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        future = self._inflight.pop(shard, None)
        data = future.result() if future is not None else open_shard(self.index, self.index.shards[shard])
        self._open[shard] = data
        while len(self._open) > self.keep:
            self._open.popitem(last=False)
        return data

    def prefetch(self, shards: list[int]) -> None:
        """Start reading the given shards in the background (remote datasets only)."""
        if self._pool is None:
            return
        for shard in shards[:self.prefetch_n]:
            if shard not in self._open and shard not in self._inflight and len(self._inflight) < self.prefetch_n:
                self._inflight[shard] = self._pool.submit(open_shard, self.index, self.index.shards[shard])
