"""Batched window reads from Zarr arrays: whole chunks, fetched concurrently, kept decoded in a bounded LRU.

A training batch reads many short windows (8–64 steps) of a few trajectories. Read one by one through zarr's
synchronous API, each window pays the event-loop round trip and decodes every chunk it touches again (a 65-step
window spans 2–3 chunks): ~250 windows/s at H2O size, 0.3x HDF5 (whose library keeps a per-dataset chunk cache).
:class:`WindowReads` reads chunk-aligned ranges instead, all chunks a batch misses in one ``asyncio.gather``
(zarr's async API: concurrent requests to an object store, decoding overlapped), keeps decoded chunks in an LRU
bounded by ``cache_bytes``, and slices windows out of memory. Results are the same arrays ``arr[a:b]`` returns.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import numpy as np

DEFAULT_CACHE_BYTES = 512 * 2**20  # decoded chunks kept per reader (per process)


class ChunkLRU:
    """Decoded chunks by key, least recently used dropped first once ``max_bytes`` is exceeded (0: keep none)."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.max_bytes, self.bytes = int(max_bytes), 0
        self._items: OrderedDict = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key):
        v = self._items.get(key)
        if v is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return v

    def put(self, key, value: np.ndarray) -> None:
        if value.nbytes > self.max_bytes:
            return
        old = self._items.pop(key, None)
        self.bytes += value.nbytes - (old.nbytes if old is not None else 0)
        self._items[key] = value
        while self.bytes > self.max_bytes:
            _, v = self._items.popitem(last=False)
            self.bytes -= v.nbytes


class WindowReads:
    """``read(requests)``: [(key, zarr array, start, stop)] -> [arr[start:stop] along axis 0], chunk-cached."""

    def __init__(self, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.cache = ChunkLRU(cache_bytes)

    def read(self, requests: list[tuple[object, object, int, int]]) -> list[np.ndarray]:
        from zarr.core.sync import sync

        plan, have, missing = [], {}, {}
        for key, arr, a, b in requests:
            c = arr.chunks[0]  # the inner chunk of a sharded array: the unit zarr decodes
            idx = list(range(a // c, (b - 1) // c + 1)) if b > a else []
            plan.append((key, arr, a, b, c, idx))
            for i in idx:
                if (key, i) in have or (key, i) in missing:
                    continue
                hit = self.cache.get((key, i))
                if hit is None:
                    missing[(key, i)] = (arr, i * c, min((i + 1) * c, arr.shape[0]))
                else:
                    have[(key, i)] = hit
        if missing:
            have.update(zip(missing, sync(_gather(list(missing.values())))))
            for k in missing:
                self.cache.put(k, have[k])
        out = []
        for key, arr, a, b, c, idx in plan:
            if not idx:
                out.append(np.empty((0, *arr.shape[1:]), arr.dtype))
                continue
            parts = [have[(key, i)] for i in idx]
            block = parts[0] if len(parts) == 1 else np.concatenate(parts)
            lo = a - idx[0] * c
            out.append(block[lo:lo + (b - a)])
        return out


async def _gather(ranges):
    return await asyncio.gather(*[arr.async_array.getitem((slice(a, b),)) for arr, a, b in ranges])
