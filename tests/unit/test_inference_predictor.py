"""Answering a request with fakes for the registry and the model loader (no MLflow, no BentoML)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from tenantml.inference.batching import MicroBatcher
from tenantml.inference.cache import ModelCache
from tenantml.inference.champion import ChampionResolver
from tenantml.errors import InvalidPayload, ModelNotFound, ModelUnavailable
from tenantml.inference.statuses import http_status
from tenantml.inference.predictor import INLINE_ROWS, Inference, LoadedModel
from tenantml.inference.schema import FeatureSchema

SCHEMA = FeatureSchema.from_pairs([("x", "float64"), ("flag", "bool")])


class Doubler:
    """An estimator: predicts 2·x + flag, and counts its calls and rows."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.calls: list[int] = []

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.calls.append(len(matrix))
        return 2 * matrix[:, 0] + matrix[:, 1] + self.offset


class Broken:
    def predict(self, matrix: np.ndarray) -> np.ndarray:
        raise ValueError("X has 3 features, value 4111-1111 bad")


class FakeRegistry:
    def __init__(self) -> None:
        self.champions: dict[tuple[str, str], str] = {("acme", "churn"): "1"}
        self.estimators: dict[tuple[str, str, str], Any] = {
            ("acme", "churn", "1"): Doubler(),
            ("acme", "churn", "2"): Doubler(offset=100),
        }
        self.lookups = 0
        self.loads: list[tuple[str, str, str]] = []

    def champion(self, tenant: str, model: str) -> str | None:
        self.lookups += 1
        return self.champions.get((tenant, model))

    def load(self, tenant: str, model: str, version: str) -> LoadedModel:
        self.loads.append((tenant, model, version))
        estimator = self.estimators.get((tenant, model, version))
        if estimator is None:
            raise ModelNotFound(model)
        return LoadedModel(tenant, model, version, estimator, SCHEMA)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def make(registry: FakeRegistry, clock: Clock | None = None, capacity: int = 4) -> Inference:
    resolver = ChampionResolver(registry.champion, refresh_s=1.0, clock=clock or Clock())
    return Inference(resolver, ModelCache(capacity), registry.load)


ROWS = [{"x": 1.5, "flag": True}, {"x": -1, "flag": False}]


def test_predict_returns_predictions_and_the_champion_version() -> None:
    registry = FakeRegistry()
    assert make(registry).predict("acme", "churn", ROWS) == {"predictions": [4.0, -2.0], "model_version": "1"}


def test_the_model_is_loaded_once_and_then_served_from_the_cache() -> None:
    registry = FakeRegistry()
    inference = make(registry)
    for _ in range(5):
        inference.predict("acme", "churn", ROWS)
    assert registry.loads == [("acme", "churn", "1")]


@pytest.mark.parametrize("model", ["unknown", "../etc", "a" * 500, "x.y", ""])
def test_an_unknown_or_invalid_model_name_is_not_found(model: str) -> None:
    with pytest.raises(ModelNotFound) as caught:
        make(FakeRegistry()).predict("acme", model, ROWS)
    assert http_status(caught.value) == 404


def test_another_tenants_model_gets_the_same_answer_as_an_unknown_one() -> None:
    inference = make(FakeRegistry())
    with pytest.raises(ModelNotFound) as other_tenant:
        inference.predict("beta", "churn", ROWS)
    with pytest.raises(ModelNotFound) as unknown:
        inference.predict("beta", "nothing-here", ROWS)
    assert str(other_tenant.value).replace("churn", "X") == str(unknown.value).replace("nothing-here", "X")


def test_bad_rows_are_refused_before_the_model_runs() -> None:
    registry = FakeRegistry()
    inference = make(registry)
    with pytest.raises(InvalidPayload, match=r"rows\[1\]\.flag"):
        inference.predict("acme", "churn", [{"x": 1.0, "flag": True}, {"x": 1.0, "flag": "no"}])
    estimator = registry.estimators[("acme", "churn", "1")]
    assert estimator.calls == []


def test_a_failing_model_is_unavailable_without_echoing_its_message() -> None:
    registry = FakeRegistry()
    registry.estimators[("acme", "churn", "1")] = Broken()
    with pytest.raises(ModelUnavailable) as caught:
        make(registry).predict("acme", "churn", ROWS)
    assert "ValueError" in str(caught.value) and "4111" not in str(caught.value)
    assert http_status(caught.value) == 503


def test_a_registry_failure_is_unavailable() -> None:
    def down(tenant: str, model: str) -> str | None:
        raise ConnectionError("refused")

    inference = Inference(ChampionResolver(down, refresh_s=1.0), ModelCache(2), FakeRegistry().load)
    with pytest.raises(ModelUnavailable, match="cannot be reached"):
        inference.predict("acme", "churn", ROWS)


def test_cache_holds_at_most_its_capacity_across_tenants() -> None:
    registry = FakeRegistry()
    for i in range(10):
        registry.champions[(f"t{i}", "m")] = "1"
        registry.estimators[(f"t{i}", "m", "1")] = Doubler()
    inference = make(registry, capacity=3)
    for i in range(10):
        inference.predict(f"t{i}", "m", ROWS)
        assert len(inference.cache) <= 3


# -- async -------------------------------------------------------------------------------------
def test_async_predict_serves_a_promotion_after_a_background_refresh() -> None:
    registry, clock = FakeRegistry(), Clock()
    inference = make(registry, clock)

    async def scenario() -> list[str]:
        versions = [(await inference.predict_async("acme", "churn", ROWS))["model_version"]]
        registry.champions[("acme", "churn")] = "2"
        clock.now += 0.5
        versions.append((await inference.predict_async("acme", "churn", ROWS))["model_version"])  # fresh: no lookup
        clock.now += 1.0
        versions.append((await inference.predict_async("acme", "churn", ROWS))["model_version"])  # stale: refresh
        await inference.drain()
        versions.append((await inference.predict_async("acme", "churn", ROWS))["model_version"])
        return versions

    assert asyncio.run(scenario()) == ["1", "1", "1", "2"]
    assert registry.lookups == 2


def test_async_background_refresh_failure_keeps_serving_the_last_champion() -> None:
    registry, clock = FakeRegistry(), Clock()
    inference = make(registry, clock)

    async def scenario() -> str:
        await inference.predict_async("acme", "churn", ROWS)
        registry.champion = lambda tenant, model: (_ for _ in ()).throw(ConnectionError("down"))  # type: ignore[method-assign]
        inference.resolver._lookup = registry.champion
        clock.now += 1.5
        answer = await inference.predict_async("acme", "churn", ROWS)
        await inference.drain()
        return str(answer["model_version"])

    assert asyncio.run(scenario()) == "1"


def test_concurrent_small_requests_share_one_model_call() -> None:
    registry = FakeRegistry()
    inference = make(registry)

    async def scenario() -> list[dict[str, Any]]:
        await inference.predict_async("acme", "churn", ROWS)  # load and warm up
        requests = [[{"x": float(i), "flag": False}] for i in range(10)]
        return await asyncio.gather(*(inference.predict_async("acme", "churn", rows) for rows in requests))

    answers = asyncio.run(scenario())
    assert [a["predictions"] for a in answers] == [[2.0 * i] for i in range(10)]
    estimator = registry.estimators[("acme", "churn", "1")]
    assert estimator.calls == [2, 10]  # the warm-up alone, then all ten together


def test_large_requests_are_predicted_off_the_event_loop() -> None:
    registry = FakeRegistry()
    rows = [{"x": float(i), "flag": True} for i in range(INLINE_ROWS + 1)]
    answer = asyncio.run(make(registry).predict_async("acme", "churn", rows))
    assert answer["predictions"] == [2.0 * i + 1 for i in range(INLINE_ROWS + 1)]


def test_async_errors_match_the_blocking_ones() -> None:
    registry = FakeRegistry()
    registry.estimators[("acme", "churn", "1")] = Broken()
    inference = make(registry)
    with pytest.raises(ModelNotFound):
        asyncio.run(inference.predict_async("acme", "nope", ROWS))
    with pytest.raises(InvalidPayload):
        asyncio.run(inference.predict_async("acme", "churn", []))
    with pytest.raises(ModelUnavailable, match="ValueError"):
        asyncio.run(inference.predict_async("acme", "churn", ROWS))


# -- micro-batching ------------------------------------------------------------------------------
def test_batches_never_mix_models_and_split_results_back() -> None:
    batcher = MicroBatcher(max_rows=4)
    first, second = Doubler(), Doubler(offset=10)

    async def scenario() -> list[np.ndarray]:
        return await asyncio.gather(
            batcher.predict("a", first.predict, np.array([[1.0, 0.0]])),
            batcher.predict("b", second.predict, np.array([[1.0, 0.0]])),
            batcher.predict("a", first.predict, np.array([[2.0, 0.0], [3.0, 1.0]])),
            batcher.predict("a", first.predict, np.array([[4.0, 0.0], [5.0, 0.0]])),  # over max_rows: next batch
        )

    results = asyncio.run(scenario())
    assert [r.tolist() for r in results] == [[2.0], [12.0], [4.0, 7.0], [8.0, 10.0]]
    assert first.calls == [3, 2] and second.calls == [1]
    assert (batcher.batches, batcher.requests) == (3, 4)


def test_a_failing_batch_fails_each_of_its_requests() -> None:
    batcher = MicroBatcher()

    async def scenario() -> list[object]:
        return await asyncio.gather(
            *(batcher.predict("a", Broken().predict, np.zeros((1, 2))) for _ in range(3)), return_exceptions=True
        )

    assert all(isinstance(r, ValueError) for r in asyncio.run(scenario()))
