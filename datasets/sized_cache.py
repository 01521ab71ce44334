"""A least-recently-used cache bounded in megabytes, for per-geometry terms that are cheap to rebuild and large to
keep (the exact Kohn–Sham terms a window reader attaches, the large-step correction matrices)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class SizedLRU:
    """``get``/``put`` by key; ``size(value)`` is its size in bytes. When the total exceeds ``max_mb`` the least
    recently used entries go first (the newest entry always stays, even alone over the bound)."""

    def __init__(self, max_mb: float, size: Callable[[Any], int]):
        self.max_bytes, self.size = max_mb * 2 ** 20, size
        self.items: OrderedDict = OrderedDict()
        self.bytes = 0

    def get(self, key: Hashable):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        return None

    def put(self, key: Hashable, value) -> None:
        if key in self.items:
            self.bytes -= self.size(self.items.pop(key))
        self.items[key] = value
        self.bytes += self.size(value)
        while self.bytes > self.max_bytes and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.bytes -= self.size(old)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def mb(self) -> float:
        return self.bytes / 2 ** 20
