"""The store's fencing and its one-active-training index against the real PostgreSQL on 127.0.0.1:5432.

The session creates its own database with a unique name and drops it afterwards.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from tenantml.adapters.database import create_database
from tenantml.adapters.store import Store
from tenantml.domain.request import (
    AttemptEnd,
    Checkpoint,
    RequestStatus,
    TrainingRequest,
    TrainingSpec,
    WorkerClass,
)
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.errors import StaleEpoch
from tests.support.postgres import temporary_database

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
WORKER_A, WORKER_B = str(uuid.uuid4()), str(uuid.uuid4())


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with temporary_database() as name:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


@pytest.fixture(scope="session")
def engine(postgres_url: str) -> Iterator[Engine]:
    engine = create_database(postgres_url)
    create_database(postgres_url).dispose()  # creating the schema again is harmless
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine, tenant_name: str) -> Store:
    store = Store(engine)
    store.add_tenant(tenant_name, hash_api_key(new_api_key()), T0)
    return store


def add(store: Store, tenant: str, model: str = "churn") -> str:
    spec = TrainingSpec(tenant, model, "/data/d.csv", "y", "sgd_classifier", {"epochs": 2}, "f" * 64)
    request = TrainingRequest(str(uuid.uuid4()), spec, RequestStatus.PENDING, T0, T0)
    store.add_request(request)
    return request.id


@pytest.fixture
def replaced(store: Store, tenant_name: str) -> str:
    request_id = add(store, tenant_name)
    store.start_attempt(request_id, 0, WORKER_A, WorkerClass.SMALL, at(1))
    store.heartbeat(request_id, 1, WORKER_A, 7, 20, at(2))
    store.commit_checkpoint(request_id, 1, WORKER_A, Checkpoint("file:///ck/5", 5, "c" * 64), at(3))
    store.start_attempt(request_id, 1, WORKER_B, WorkerClass.LARGE, at(4), AttemptEnd.CRASHED, "boom")
    return request_id


def test_stale_epoch_writes_raise_and_change_nothing(store: Store, replaced: str) -> None:
    before = store.get_request(replaced)
    stale_writes = [
        lambda: store.heartbeat(replaced, 1, WORKER_A, 9, 20, at(10)),
        lambda: store.commit_checkpoint(replaced, 1, WORKER_A, Checkpoint("file:///ck/9", 9, "d" * 64), at(10)),
        lambda: store.complete(replaced, 1, WORKER_A, "7", {"accuracy": 0.9}, at(10)),
        lambda: store.report_attempt_end(replaced, 1, WORKER_A, AttemptEnd.RESOURCE_EXHAUSTED, "oom", at(10)),
        lambda: store.start_attempt(replaced, 1, str(uuid.uuid4()), WorkerClass.SMALL, at(10)),
    ]
    for write in stale_writes:
        with pytest.raises(StaleEpoch):
            write()
    assert store.get_request(replaced) == before


def test_attempts_and_datetimes_round_trip(store: Store, replaced: str) -> None:
    store.heartbeat(replaced, 2, WORKER_B, 12, 20, at(5))
    store.complete(replaced, 2, WORKER_B, "3", {"accuracy": 0.8}, at(6))
    request = store.get_request(replaced)
    assert (request.status, request.model_version, request.metrics) == (RequestStatus.COMPLETED, "3", {"accuracy": 0.8})
    history = [(a.number, a.epoch, a.worker_class, a.end, a.resume_step, a.end_step) for a in request.attempts]
    assert history == [
        (1, 1, WorkerClass.SMALL, AttemptEnd.CRASHED, 0, 7),
        (2, 2, WorkerClass.LARGE, AttemptEnd.COMPLETED, 5, 12),
    ]
    assert request.finished_at == at(6) and request.attempts[0].ended_at == at(4)
    stamps = [request.created_at, request.updated_at, request.finished_at, *(a.started_at for a in request.attempts)]
    assert all(stamp is not None and stamp.utcoffset() is not None for stamp in stamps)


def test_finish_fences_the_worker(store: Store, replaced: str) -> None:
    store.finish(replaced, 2, RequestStatus.FAILED, at(5), "gave up", AttemptEnd.HEARTBEAT_LOST)
    with pytest.raises(StaleEpoch):
        store.heartbeat(replaced, 2, WORKER_B, 9, 20, at(6))
    with pytest.raises(StaleEpoch):
        store.complete(replaced, 2, WORKER_B, "9", {}, at(6))
    request = store.get_request(replaced)
    assert (request.status, request.worker_uuid, request.attempts[-1].end) == (
        RequestStatus.FAILED, None, AttemptEnd.HEARTBEAT_LOST
    )


def test_concurrent_failovers_from_the_same_epoch_have_exactly_one_winner(store: Store, tenant_name: str) -> None:
    request_id = add(store, tenant_name)
    store.start_attempt(request_id, 0, WORKER_A, WorkerClass.SMALL, at(1))
    contenders = [str(uuid.uuid4()) for _ in range(5)]  # within the pool: 2 connections plus 4 overflow
    barrier = threading.Barrier(len(contenders))
    outcomes: dict[str, object] = {}

    def fail_over(worker_uuid: str) -> None:
        barrier.wait()
        try:
            outcomes[worker_uuid] = store.start_attempt(
                request_id, 1, worker_uuid, WorkerClass.SMALL, at(5), AttemptEnd.HEARTBEAT_LOST, "silent"
            )
        except Exception as err:  # collected and asserted below
            outcomes[worker_uuid] = err

    threads = [threading.Thread(target=fail_over, args=(worker,)) for worker in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [worker for worker, outcome in outcomes.items() if outcome == 2]
    assert len(winners) == 1, outcomes
    assert sum(isinstance(outcome, StaleEpoch) for outcome in outcomes.values()) == len(contenders) - 1, outcomes
    request = store.get_request(request_id)
    assert (request.epoch, request.worker_uuid, len(request.attempts)) == (2, winners[0], 2)


def test_one_active_training_per_tenant_and_model(store: Store, tenant_name: str) -> None:
    first = add(store, tenant_name)
    with pytest.raises(IntegrityError):
        add(store, tenant_name)
    add(store, tenant_name, "fraud")
    store.start_attempt(first, 0, WORKER_A, WorkerClass.SMALL, at(1))
    with pytest.raises(IntegrityError):
        add(store, tenant_name)
    store.complete(first, 1, WORKER_A, "1", {}, at(2))
    second = add(store, tenant_name)
    assert store.active_request(tenant_name, "churn").id == second  # type: ignore[union-attr]
