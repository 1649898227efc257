"""The champion resolver asks the registry at most every ``refresh_s``, with a fake registry and clock."""

from __future__ import annotations

import pytest

from tenantml.inference.champion import ChampionResolver


class FakeRegistry:
    def __init__(self) -> None:
        self.champions: dict[tuple[str, str], str] = {}
        self.calls = 0
        self.down = False

    def champion(self, tenant: str, model: str) -> str | None:
        self.calls += 1
        if self.down:
            raise ConnectionError("registry down")
        return self.champions.get((tenant, model))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry() -> FakeRegistry:
    fake = FakeRegistry()
    fake.champions[("acme", "churn")] = "1"
    return fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_the_registry_is_asked_at_most_once_per_refresh_interval(registry: FakeRegistry, clock: Clock) -> None:
    resolver = ChampionResolver(registry.champion, refresh_s=2.0, clock=clock)
    assert resolver.resolve("acme", "churn") == "1"
    for _ in range(100):
        clock.now += 0.01
        assert resolver.resolve("acme", "churn") == "1"
    assert registry.calls == 1


def test_a_promotion_is_seen_once_the_interval_has_passed(registry: FakeRegistry, clock: Clock) -> None:
    resolver = ChampionResolver(registry.champion, refresh_s=2.0, clock=clock)
    assert resolver.resolve("acme", "churn") == "1"
    registry.champions[("acme", "churn")] = "2"
    clock.now += 1.9
    assert resolver.resolve("acme", "churn") == "1"
    clock.now += 0.2
    assert resolver.resolve("acme", "churn") == "2"
    assert registry.calls == 2


def test_current_says_whether_the_last_answer_is_fresh_or_stale(registry: FakeRegistry, clock: Clock) -> None:
    resolver = ChampionResolver(registry.champion, refresh_s=2.0, max_stale_s=10.0, clock=clock)
    assert resolver.current("acme", "churn") is None  # never asked
    resolver.refresh("acme", "churn")
    seen = resolver.current("acme", "churn")
    assert seen is not None and seen.version == "1" and seen.fresh
    clock.now += 3
    seen = resolver.current("acme", "churn")
    assert seen is not None and seen.version == "1" and not seen.fresh  # servable while it refreshes
    clock.now += 10
    assert resolver.current("acme", "churn") is None  # too old to serve: ask again first
    assert registry.calls == 1


def test_no_champion_is_remembered_too(registry: FakeRegistry, clock: Clock) -> None:
    resolver = ChampionResolver(registry.champion, refresh_s=2.0, clock=clock)
    assert resolver.resolve("acme", "unknown") is None
    assert resolver.resolve("acme", "unknown") is None
    assert registry.calls == 1
    seen = resolver.current("acme", "unknown")
    assert seen is not None and seen.version is None


def test_answers_are_per_tenant_and_model(registry: FakeRegistry, clock: Clock) -> None:
    registry.champions[("beta", "churn")] = "7"
    resolver = ChampionResolver(registry.champion, refresh_s=2.0, clock=clock)
    assert resolver.resolve("acme", "churn") == "1"
    assert resolver.resolve("beta", "churn") == "7"
    assert resolver.resolve("acme", "other") is None


def test_a_registry_error_propagates_and_keeps_the_last_answer(registry: FakeRegistry, clock: Clock) -> None:
    resolver = ChampionResolver(registry.champion, refresh_s=2.0, clock=clock)
    resolver.refresh("acme", "churn")
    registry.down = True
    clock.now += 3
    with pytest.raises(ConnectionError):
        resolver.refresh("acme", "churn")
    seen = resolver.current("acme", "churn")
    assert seen is not None and seen.version == "1"


def test_memory_of_answers_is_bounded(registry: FakeRegistry, clock: Clock) -> None:
    resolver = ChampionResolver(registry.champion, refresh_s=2.0, capacity=3, clock=clock)
    for i in range(10):
        resolver.refresh("acme", f"m{i}")
    assert resolver.current("acme", "m0") is None
    assert resolver.current("acme", "m9") is not None


def test_forget_drops_an_answer(registry: FakeRegistry, clock: Clock) -> None:
    resolver = ChampionResolver(registry.champion, refresh_s=2.0, clock=clock)
    resolver.refresh("acme", "churn")
    resolver.forget("acme", "churn")
    assert resolver.current("acme", "churn") is None


def test_refresh_interval_must_be_positive(registry: FakeRegistry) -> None:
    with pytest.raises(ValueError, match="refresh_s"):
        ChampionResolver(registry.champion, refresh_s=0)
