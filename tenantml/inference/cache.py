"""A bounded, thread-safe LRU cache of loaded models, keyed by (tenant, model, version).

Loading is single-flight: when several requests miss on the same key at once, one loads and the
others wait for its result (or its error, which is not cached). The least recently used entry is
dropped when the cache is full, so memory stays bounded however many tenants call.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, cast

__all__ = ["ModelCache", "ModelKey"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

ModelKey = tuple[str, str, str]
"""(tenant, model, version)."""


class _Loading(Generic[V]):
    """One load in progress; waiters block on ``done``."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: V | None = None
        self.error: BaseException | None = None


class ModelCache(Generic[K, V]):
    def __init__(self, capacity: int, on_evict: Callable[[K, V], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._on_evict = on_evict
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._loading: dict[K, _Loading[V]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> list[K]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._entries)

    def get(self, key: K) -> V | None:
        """The cached value (marking it most recently used), or None; never loads."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: K, value: V) -> None:
        evicted: list[tuple[K, V]] = []
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                evicted.append(self._entries.popitem(last=False))
                self.evictions += 1
        if self._on_evict is not None:
            for old_key, old_value in evicted:
                self._on_evict(old_key, old_value)

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The cached value, or ``load()``'s result (cached); one load per key at a time."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return value
            loading = self._loading.get(key)
            owner = loading is None
            if owner:
                loading = self._loading[key] = _Loading[V]()
                self.misses += 1
        assert loading is not None
        if not owner:
            loading.done.wait()
            if loading.error is not None:
                raise loading.error
            return cast(V, loading.value)  # set before done, since error is None
        try:
            value = load()
        except BaseException as err:
            loading.error = err
            raise
        else:
            loading.value = value
            self.put(key, value)
            return value
        finally:
            with self._lock:
                self._loading.pop(key, None)
            loading.done.set()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
