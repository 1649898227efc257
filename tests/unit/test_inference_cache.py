"""The LRU model cache: bounded, least recently used out first, one load per key at a time."""

from __future__ import annotations

import threading
import time

import pytest

from tenantml.inference.cache import ModelCache


def test_the_least_recently_used_entry_is_evicted_when_full() -> None:
    evicted: list[tuple[str, int]] = []
    cache: ModelCache[str, int] = ModelCache(2, on_evict=lambda k, v: evicted.append((k, v)))
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.put("c", 3)
    assert evicted == [("b", 2)]
    assert cache.keys() == ["a", "c"]
    assert "b" not in cache and len(cache) == 2
    assert cache.evictions == 1


def test_get_or_load_loads_once_then_hits() -> None:
    cache: ModelCache[str, str] = ModelCache(4)
    calls: list[str] = []

    def load() -> str:
        calls.append("x")
        return "model"

    assert cache.get_or_load("k", load) == "model"
    assert cache.get_or_load("k", load) == "model"
    assert calls == ["x"]
    assert (cache.hits, cache.misses) == (1, 1)


def test_size_never_exceeds_capacity_however_many_keys_load() -> None:
    cache: ModelCache[tuple[str, str, str], object] = ModelCache(3)
    for i in range(50):
        cache.get_or_load((f"t{i}", "m", "1"), object)
        assert len(cache) <= 3
    assert cache.keys() == [("t47", "m", "1"), ("t48", "m", "1"), ("t49", "m", "1")]


def test_concurrent_misses_on_one_key_share_a_single_load() -> None:
    cache: ModelCache[str, str] = ModelCache(2)
    started = threading.Event()
    release = threading.Event()
    loads: list[int] = []

    def slow_load() -> str:
        loads.append(1)
        started.set()
        release.wait(5)
        return "model"

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_load("k", slow_load))) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert started.wait(5)
    deadline = time.monotonic() + 5
    while len(loads) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(5)
    assert loads == [1]
    assert results == ["model"] * 8


def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache: ModelCache[str, str] = ModelCache(2)

    def broken() -> str:
        raise RuntimeError("registry down")

    with pytest.raises(RuntimeError, match="registry down"):
        cache.get_or_load("k", broken)
    assert "k" not in cache
    assert cache.get_or_load("k", lambda: "ok") == "ok"


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ModelCache(0)
