"""Training requests seen from outside: views, scoping, move, cancel and waiting, on a real SQLite store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tenantml.adapters.store import Store
from tenantml.domain.request import Lease, RequestStatus, TrainingRequest, TrainingSpec, WorkerClass
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.errors import InvalidRequest, NotFound, StaleEpoch, TenantmlError
from tenantml.services import trainings

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
WORKER = "aaaaaaaa-0000-0000-0000-000000000001"
VIEW_KEYS = {
    "request_id", "tenant", "model", "algorithm", "status", "reason", "step", "total_steps", "epoch", "worker_uuid",
    "worker_class", "checkpoint_step", "model_version", "metrics", "mlflow_run_id", "created_at", "finished_at",
    "finalized_at", "state", "attempts",
}


@pytest.fixture(autouse=True)
def tenants(store: Store, tenant_name: str) -> None:
    """Two tenants: ``tenant_name`` and ``t-other``."""
    for tenant in (tenant_name, "t-other"):
        store.add_tenant(tenant, hash_api_key(new_api_key()), T0)


def submitted(store: Store, tenant: str, model: str = "churn", seconds: int = 0) -> str:
    """The id of a new pending request of ``tenant``, created ``seconds`` after T0."""
    spec = TrainingSpec(tenant, model, f"/data/{tenant}/d.csv", "y", "sgd_classifier", {"epochs": 2}, "f" * 64)
    created = T0 + timedelta(seconds=seconds)
    request = TrainingRequest(str(uuid.uuid4()), spec, RequestStatus.PENDING, created, created)
    store.add_request(request)
    return request.id


def running(store: Store, request_id: str) -> Lease:
    epoch = store.start_attempt(request_id, 0, WORKER, WorkerClass.SMALL, T0)
    lease = Lease(request_id, WORKER, epoch)
    store.mark_running(lease, T0)
    return lease


def test_a_view_has_the_keys_of_run_show_and_one_row_an_attempt(store: Store, tenant_name: str) -> None:
    request_id = submitted(store, tenant_name)
    running(store, request_id)
    view = trainings.show_request(store, request_id, tenant_name)
    assert set(view) == VIEW_KEYS
    assert view["status"] == "running" and view["worker_uuid"] == WORKER and view["worker_class"] == "small"
    assert [(a["attempt"], a["worker_uuid"], a["end"]) for a in view["attempts"]] == [(1, WORKER, None)]


def test_a_tenant_sees_only_its_own_requests_newest_first(store: Store, tenant_name: str) -> None:
    first, second = submitted(store, tenant_name, "a", 1), submitted(store, tenant_name, "b", 2)
    other = submitted(store, "t-other", "a", 3)
    assert [v["request_id"] for v in trainings.list_requests(store, tenant_name)] == [second, first]
    assert [v["request_id"] for v in trainings.list_requests(store, None, limit=1)] == [other]
    with pytest.raises(NotFound):
        trainings.show_request(store, other, tenant_name)


def test_cancelling_ends_the_request_and_fences_off_its_worker(store: Store, tenant_name: str) -> None:
    request_id = submitted(store, tenant_name)
    lease = running(store, request_id)
    trainings.cancel_request(store, request_id, tenant_name, T0 + timedelta(seconds=5))
    cancelled = store.get_request(request_id)
    assert cancelled.status is RequestStatus.CANCELLED and cancelled.reason == "cancelled by an operator"
    assert cancelled.attempts[-1].end is not None and cancelled.attempts[-1].end.value == "cancelled"
    with pytest.raises(StaleEpoch):
        store.heartbeat(lease, 1, 10, T0 + timedelta(seconds=6))


def test_an_ended_request_cannot_be_cancelled(store: Store, tenant_name: str) -> None:
    request_id = submitted(store, tenant_name)
    trainings.cancel_request(store, request_id, None, T0)
    with pytest.raises(InvalidRequest, match=f"request {request_id} has already ended \\(cancelled\\)"):
        trainings.cancel_request(store, request_id, None, T0)


def test_another_tenants_request_can_be_neither_moved_nor_cancelled(store: Store, tenant_name: str) -> None:
    request_id = submitted(store, "t-other")
    running(store, request_id)
    with pytest.raises(NotFound):
        trainings.move_request(store, request_id, tenant_name, T0)
    with pytest.raises(NotFound):
        trainings.cancel_request(store, request_id, tenant_name, T0)
    assert store.get_request(request_id).status is RequestStatus.RUNNING
    assert not store.get_request(request_id).move_requested


def test_a_running_request_is_moved_on_request(store: Store, tenant_name: str) -> None:
    request_id = submitted(store, tenant_name)
    with pytest.raises(InvalidRequest, match="not training"):
        trainings.move_request(store, request_id, tenant_name, T0)
    running(store, request_id)
    trainings.move_request(store, request_id, tenant_name, T0)
    assert store.get_request(request_id).move_requested


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_waiting_reports_every_poll_and_returns_the_ended_request(store: Store, tenant_name: str) -> None:
    request_id = submitted(store, tenant_name)
    clock, seen = Clock(), []

    def on_update(request: TrainingRequest) -> None:
        seen.append(request.status.value)
        if len(seen) == 3:
            trainings.cancel_request(store, request_id, None, T0)

    ended = trainings.wait_for_request(store, request_id, 60, on_update, clock=clock, sleep=clock.sleep)
    assert ended.status is RequestStatus.CANCELLED
    assert seen == ["pending", "pending", "pending", "cancelled"]


def test_waiting_gives_up_at_the_timeout_saying_the_training_goes_on(store: Store, tenant_name: str) -> None:
    request_id = submitted(store, tenant_name)
    clock = Clock()
    with pytest.raises(TenantmlError, match=f"did not finish within 5 s.*tenantml run show {request_id}"):
        trainings.wait_for_request(store, request_id, 5, lambda request: None, clock=clock, sleep=clock.sleep)
    assert 5 <= clock.now <= 6
    assert store.get_request(request_id).status is RequestStatus.PENDING
