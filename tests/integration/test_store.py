"""The training metadata store, one suite on both backends: fenced writes, compare-and-set failover, scoping.

SQLite runs on a file per test; PostgreSQL (127.0.0.1:5432, trust auth) on a database the session
creates with a unique name and drops afterwards.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tenantml.adapters.database import create_database, requests
from tenantml.adapters.store import Store
from tenantml.domain.request import (
    AttemptEnd,
    Checkpoint,
    Lease,
    RequestStatus,
    TrainingRequest,
    TrainingSpec,
    WorkerClass,
)
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.errors import AlreadyTraining, InvalidRequest, NotFound, StaleEpoch, TenantExists
from tests.support.postgres import temporary_database

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_request(tenant: str, model: str = "churn", key: str | None = None, created: float = 0) -> TrainingRequest:
    spec = TrainingSpec(tenant, model, f"/data/{tenant}/d.csv", "y", "sgd_classifier", {"epochs": 2}, "f" * 64)
    created_at = at(created)
    return TrainingRequest(str(uuid.uuid4()), spec, RequestStatus.PENDING, created_at, created_at, idempotency_key=key)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same suite on both backends: SQLite (the embedded default) and PostgreSQL (production).

    Each test gets an empty database of its own, so that listings can be asserted whole.
    """
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'tenantml.db'}"
        else:
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{stack.enter_context(temporary_database())}"
        engine = create_database(url)
        stack.callback(engine.dispose)
        yield Store(engine)


@pytest.fixture
def tenant(store: Store, tenant_name: str) -> str:
    store.add_tenant(tenant_name, hash_api_key(new_api_key()), T0)
    return tenant_name


def add(store: Store, tenant: str, model: str = "churn", key: str | None = None, created: float = 0) -> str:
    request = new_request(tenant, model, key, created)
    store.add_request(request)
    return request.id


WORKER_A, WORKER_B = "aaaaaaaa-0000-0000-0000-000000000001", "bbbbbbbb-0000-0000-0000-000000000002"


def fail_over(store: Store, request_id: str, epoch: int, worker_uuid: str, worker_class: WorkerClass,
              now: datetime, end: AttemptEnd, reason: str) -> int:
    """What the supervisor does on a UUID event with a free slot: queue the request again, start it."""
    store.requeue(request_id, epoch, worker_class, now, end, reason)
    return store.start_attempt(request_id, epoch, worker_uuid, worker_class, now)


@pytest.fixture
def replaced(store: Store, tenant: str) -> str:
    """A request whose first worker (A, epoch 1) trained to step 7, committed step 5, and was replaced by B."""
    request_id = add(store, tenant)
    assert store.start_attempt(request_id, 0, WORKER_A, WorkerClass.SMALL, at(1)) == 1
    store.heartbeat(Lease(request_id, WORKER_A, 1), 7, 20, at(2))
    store.commit_checkpoint(Lease(request_id, WORKER_A, 1), Checkpoint("file:///ck/5", 5, "c" * 64), at(3))
    assert fail_over(store, request_id, 1, WORKER_B, WorkerClass.SMALL, at(4), AttemptEnd.CRASHED, "boom") == 2
    return request_id


STALE_WRITES: dict[str, Callable[[Store, str], None]] = {
    "heartbeat": lambda s, r: s.heartbeat(Lease(r, WORKER_A, 1), 9, 20, at(10)),
    "commit_checkpoint": lambda s, r: s.commit_checkpoint(Lease(r, WORKER_A, 1), Checkpoint("file:///ck/9", 9, "d"), at(10)),
    "complete": lambda s, r: s.complete(Lease(r, WORKER_A, 1), "7", {"accuracy": 0.9}, at(10)),
    "report_attempt_end": lambda s, r: s.report_attempt_end(Lease(r, WORKER_A, 1), AttemptEnd.PREEMPTED, "spot", at(10)),
}


@pytest.mark.parametrize("write", list(STALE_WRITES))
def test_stale_epoch_write_raises_and_changes_nothing(store: Store, replaced: str, write: str) -> None:
    before = store.get_request(replaced)
    with pytest.raises(StaleEpoch, match="epoch 1 has been fenced off") as caught:
        STALE_WRITES[write](store, replaced)
    assert (caught.value.request_id, caught.value.epoch) == (replaced, 1)
    assert store.get_request(replaced) == before


def test_write_with_current_epoch_but_another_uuid_is_refused(store: Store, replaced: str) -> None:
    before = store.get_request(replaced)
    with pytest.raises(StaleEpoch):
        store.heartbeat(Lease(replaced, WORKER_A, 2), 9, 20, at(10))
    with pytest.raises(StaleEpoch):
        store.check_current(Lease(replaced, WORKER_A, 2))
    assert store.get_request(replaced) == before


def test_current_worker_writes_are_accepted(store: Store, replaced: str) -> None:
    store.check_current(Lease(replaced, WORKER_B, 2))
    store.heartbeat(Lease(replaced, WORKER_B, 2), 8, 20, at(10))
    store.commit_checkpoint(Lease(replaced, WORKER_B, 2), Checkpoint("file:///ck/8", 8, "e" * 64), at(11))
    request = store.get_request(replaced)
    assert (request.step, request.total_steps, request.heartbeat_at) == (8, 20, at(11))
    assert request.checkpoint == Checkpoint("file:///ck/8", 8, "e" * 64)


def test_start_attempt_is_a_compare_and_set_on_the_epoch(store: Store, replaced: str) -> None:
    before = store.get_request(replaced)
    with pytest.raises(StaleEpoch):
        fail_over(store, replaced, 1, str(uuid.uuid4()), WorkerClass.LARGE, at(10), AttemptEnd.CRASHED, "late")
    with pytest.raises(StaleEpoch):  # a working request is started only through the queue
        store.start_attempt(replaced, 2, str(uuid.uuid4()), WorkerClass.LARGE, at(10))
    assert store.get_request(replaced) == before


def test_concurrent_failovers_from_the_same_epoch_have_exactly_one_winner(store: Store, tenant: str) -> None:
    request_id = add(store, tenant)
    store.start_attempt(request_id, 0, WORKER_A, WorkerClass.SMALL, at(1))
    contenders = [str(uuid.uuid4()) for _ in range(6)]
    barrier = threading.Barrier(len(contenders))
    outcomes: dict[str, object] = {}

    def contend(worker_uuid: str) -> None:
        barrier.wait()
        try:
            outcomes[worker_uuid] = fail_over(
                store, request_id, 1, worker_uuid, WorkerClass.SMALL, at(5), AttemptEnd.HEARTBEAT_LOST, "silent"
            )
        except Exception as err:  # collected and asserted below
            outcomes[worker_uuid] = err

    threads = [threading.Thread(target=contend, args=(worker,)) for worker in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [worker for worker, outcome in outcomes.items() if outcome == 2]
    losers = [outcome for outcome in outcomes.values() if isinstance(outcome, StaleEpoch)]
    assert len(winners) == 1 and len(losers) == len(contenders) - 1, outcomes
    request = store.get_request(request_id)
    assert (request.epoch, request.worker_uuid) == (2, winners[0])
    assert [(a.number, a.epoch, a.worker_uuid) for a in request.attempts] == [(1, 1, WORKER_A), (2, 2, winners[0])]


def test_finish_fences_the_worker_and_closes_its_attempt(store: Store, tenant: str) -> None:
    request_id = add(store, tenant)
    store.start_attempt(request_id, 0, WORKER_A, WorkerClass.SMALL, at(1))
    store.heartbeat(Lease(request_id, WORKER_A, 1), 3, 10, at(2))
    store.finish(request_id, 1, RequestStatus.FAILED, at(3), "gave up", AttemptEnd.CRASHED)
    request = store.get_request(request_id)
    assert (request.status, request.reason, request.worker_uuid, request.finished_at) == (
        RequestStatus.FAILED, "gave up", None, at(3)
    )
    assert request.epoch == 2
    attempt = request.attempts[0]
    assert (attempt.end, attempt.reason, attempt.ended_at) == (AttemptEnd.CRASHED, "gave up", at(3))
    assert attempt.end_step == 3
    for write in STALE_WRITES.values():
        with pytest.raises(StaleEpoch):
            write(store, request_id)
    with pytest.raises(StaleEpoch):  # a terminal request cannot be finished or resumed again
        store.finish(request_id, 2, RequestStatus.CANCELLED, at(4))
    with pytest.raises(StaleEpoch):
        store.start_attempt(request_id, 2, WORKER_B, WorkerClass.SMALL, at(4))
    assert store.get_request(request_id) == request


def test_attempts_history_records_numbers_epochs_ends_and_steps(store: Store, replaced: str) -> None:
    request = store.get_request(replaced)
    assert request.status is RequestStatus.RESUMING
    assert (request.worker_uuid, request.heartbeat_at, request.epoch) == (WORKER_B, None, 2)
    first, second = request.attempts
    assert (first.number, first.epoch, first.worker_uuid, first.worker_class) == (1, 1, WORKER_A, WorkerClass.SMALL)
    assert (first.started_at, first.ended_at, first.end, first.reason) == (at(1), at(4), AttemptEnd.CRASHED, "boom")
    assert (first.resume_step, first.end_step) == (0, 7)
    assert (second.number, second.epoch, second.worker_uuid, second.started_at) == (2, 2, WORKER_B, at(4))
    assert (second.ended_at, second.end, second.resume_step) == (None, None, 5)
    assert request.steps_redone(second) == 2

    store.set_attempt_flow_run(replaced, 2, "flow-run-2")
    store.report_attempt_end(Lease(replaced, WORKER_B, 2), AttemptEnd.RESOURCE_EXHAUSTED, "out of memory", at(5))
    reported = store.get_request(replaced).attempts[1]
    assert (reported.flow_run_id, reported.end, reported.reason, reported.ended_at) == (
        "flow-run-2", AttemptEnd.RESOURCE_EXHAUSTED, "out of memory", None
    )
    fail_over(store, replaced, 2, WORKER_A, WorkerClass.LARGE, at(6), AttemptEnd.CRASHED, "run crashed")
    store.heartbeat(Lease(replaced, WORKER_A, 3), 20, 20, at(7))
    store.complete(Lease(replaced, WORKER_A, 3), "4", {"accuracy": 0.75}, at(8))

    done = store.get_request(replaced)
    assert (done.status, done.model_version, done.metrics, done.worker_uuid, done.finished_at) == (
        RequestStatus.COMPLETED, "4", {"accuracy": 0.75}, None, at(8)
    )
    ends = [(a.number, a.end, a.reason, a.worker_class, a.resume_step, a.end_step) for a in done.attempts]
    assert ends == [
        (1, AttemptEnd.CRASHED, "boom", WorkerClass.SMALL, 0, 7),
        (2, AttemptEnd.RESOURCE_EXHAUSTED, "out of memory", WorkerClass.SMALL, 5, 7),  # the worker's reason is kept
        (3, AttemptEnd.COMPLETED, None, WorkerClass.LARGE, 5, 20),
    ]
    assert done.failovers == 2


def test_one_active_training_per_tenant_and_model(store: Store, tenant: str, tenant_name: str) -> None:
    first = add(store, tenant, "churn")
    with pytest.raises(AlreadyTraining):
        add(store, tenant, "churn", created=1)
    add(store, tenant, "other-model")
    other_tenant = tenant_name + "-b"
    store.add_tenant(other_tenant, hash_api_key(new_api_key()), T0)
    add(store, other_tenant, "churn")

    store.start_attempt(first, 0, WORKER_A, WorkerClass.SMALL, at(1))
    with pytest.raises(AlreadyTraining):  # running counts as active too
        add(store, tenant, "churn", created=2)
    store.finish(first, 1, RequestStatus.CANCELLED, at(3))
    second = add(store, tenant, "churn", created=4)
    assert store.active_request(tenant, "churn").id == second  # type: ignore[union-attr]
    terminal = new_request(tenant, "churn")
    terminal.status = RequestStatus.SKIPPED
    store.add_request(terminal)  # terminal records are never limited


def test_tenant_is_found_by_its_key_digest(store: Store, tenant_name: str) -> None:
    key = new_api_key()
    store.add_tenant(tenant_name, hash_api_key(key), T0)
    assert store.tenant_for_key(hash_api_key(key)) == tenant_name
    assert store.tenant_for_key(hash_api_key(new_api_key())) is None
    assert store.tenant_exists(tenant_name) and not store.tenant_exists(tenant_name + "x")
    with pytest.raises(TenantExists, match=tenant_name):
        store.add_tenant(tenant_name, hash_api_key(new_api_key()), T0)
    assert store.list_tenants() == [tenant_name]


def test_reads_are_scoped_by_tenant(store: Store, tenant: str, tenant_name: str) -> None:
    other = tenant_name + "-b"
    store.add_tenant(other, hash_api_key(new_api_key()), T0)
    mine = [add(store, tenant, "churn", created=1), add(store, tenant, "fraud", created=2)]
    theirs = add(store, other, "churn", created=3)

    assert [r.id for r in store.list_requests(tenant=tenant)] == mine[::-1]  # newest first
    assert [r.id for r in store.list_requests(tenant=other)] == [theirs]
    assert {r.id for r in store.list_requests()} == {*mine, theirs}  # operator view
    assert store.get_request(mine[0], tenant=tenant).id == mine[0]
    with pytest.raises(NotFound, match=theirs):
        store.get_request(theirs, tenant=tenant)
    with pytest.raises(NotFound):
        store.get_request(str(uuid.uuid4()))
    assert store.get_request(theirs).tenant == other
    assert store.active_request(other, "churn").id == theirs  # type: ignore[union-attr]
    assert store.active_request(tenant, "churn").id == mine[0]  # type: ignore[union-attr]


def test_datetimes_come_back_timezone_aware(store: Store, replaced: str) -> None:
    store.heartbeat(Lease(replaced, WORKER_B, 2), 8, 20, at(10))
    store.finish(replaced, 2, RequestStatus.CANCELLED, at(12), "cancelled", AttemptEnd.CANCELLED)
    request = store.get_request(replaced)
    stamps = [request.created_at, request.updated_at, request.finished_at]
    stamps += [stamp for a in request.attempts for stamp in (a.started_at, a.ended_at)]
    assert all(stamp is not None and stamp.utcoffset() == timedelta(0) for stamp in stamps), stamps
    assert request.finished_at == at(12)


def test_the_supervisor_lease_is_one_holder_at_a_time(store: Store) -> None:
    assert store.hold_lease("supervisor", "one", at(1), stale_after_s=10)
    assert not store.hold_lease("supervisor", "two", at(5), stale_after_s=10)
    assert store.hold_lease("supervisor", "two", at(12), stale_after_s=10)
    assert store.lease_holder("supervisor") == ("two", at(12))


def test_a_requeued_request_fences_its_worker_waits_and_resumes_from_its_checkpoint(store: Store, replaced: str) -> None:
    store.requeue(replaced, 2, WorkerClass.LARGE, at(10), AttemptEnd.PREEMPTED, "for tenant b")
    waiting = store.get_request(replaced)
    assert (waiting.status, waiting.worker_uuid, waiting.worker_class, waiting.queued_at) == (
        RequestStatus.WAITING, None, WorkerClass.LARGE, at(10)
    )
    assert waiting.attempts[-1].end is AttemptEnd.PREEMPTED and waiting.attempts[-1].ended_at == at(10)
    with pytest.raises(StaleEpoch):  # the worker holding epoch 2 is fenced at once
        store.heartbeat(Lease(replaced, WORKER_B, 2), 9, 20, at(11))
    with pytest.raises(AlreadyTraining):  # waiting is active: still one training per tenant and model
        store.add_request(new_request(waiting.tenant, waiting.model, created=20))
    assert store.start_attempt(replaced, 2, WORKER_A, WorkerClass.LARGE, at(12)) == 3
    resumed = store.get_request(replaced)
    assert (resumed.status, resumed.queued_at, resumed.attempts[-1].resume_step) == (RequestStatus.RESUMING, None, 5)


def test_preemption_is_asked_once_and_answered_by_the_heartbeat(store: Store, replaced: str) -> None:
    lease = Lease(replaced, WORKER_B, 2)
    assert store.heartbeat(lease, 8, 20, at(10)) is None
    assert store.request_preemption(replaced, 2, "tenant b has waited 31 s", at(11))
    assert not store.request_preemption(replaced, 2, "again", at(12))  # asked already
    assert not store.request_preemption(replaced, 1, "stale", at(12))
    assert store.heartbeat(lease, 9, 20, at(13)) == "tenant b has waited 31 s"


def test_only_a_running_training_can_be_moved(store: Store, tenant: str) -> None:
    request_id = add(store, tenant)
    with pytest.raises(InvalidRequest, match="not training"):
        store.request_move(request_id, at(1))
    store.start_attempt(request_id, 0, WORKER_A, WorkerClass.SMALL, at(1))
    store.request_move(request_id, at(2))
    assert store.get_request(request_id).move_requested
    fail_over(store, request_id, 1, WORKER_B, WorkerClass.SMALL, at(3), AttemptEnd.MOVED, "moved")
    assert not store.get_request(request_id).move_requested


def test_request_is_found_by_idempotency_key(store: Store, tenant: str) -> None:
    request_id = add(store, tenant, key="order-17")
    assert store.by_idempotency_key(tenant, "order-17").id == request_id  # type: ignore[union-attr]
    assert store.get_request(request_id).idempotency_key == "order-17"
    assert store.by_idempotency_key(tenant, "order-18") is None
    assert store.by_idempotency_key(tenant + "-b", "order-17") is None  # another tenant's keys are its own


def test_workload_counts_queued_working_and_completed_per_worker_class(store: Store, tenant: str) -> None:
    add(store, tenant, "a")  # pending: queued for the small class, its request's class
    waiting = add(store, tenant, "b")
    store.start_attempt(waiting, 0, WORKER_A, WorkerClass.SMALL, at(1))
    with store.engine.begin() as conn:  # its attempt ended for a resource failure: it waits for a large slot
        conn.execute(requests.update().where(requests.c.id == waiting).values(
            status=RequestStatus.WAITING.value, worker_uuid=None, worker_class=WorkerClass.LARGE.value))
    dispatched = add(store, tenant, "c")
    store.start_attempt(dispatched, 0, WORKER_B, WorkerClass.LARGE, at(1))  # not yet running: holds its slot
    running = add(store, tenant, "d")
    worker = "dddddddd-0000-0000-0000-000000000004"
    store.start_attempt(running, 0, worker, WorkerClass.SMALL, at(1))
    store.mark_running(Lease(running, worker, 1), at(2))
    done = add(store, tenant, "e")
    store.start_attempt(done, 0, WORKER_A, WorkerClass.SMALL, at(1))
    store.complete(Lease(done, WORKER_A, 1), "1", {}, at(30))

    found = store.workload(completed_since=at(10))
    assert (found["small"].pending, found["small"].running, found["small"].completed) == (1, 1, 1)
    assert (found["large"].pending, found["large"].running, found["large"].completed) == (1, 1, 0)
    assert store.workload(completed_since=at(60))["small"].completed == 0
    assert store.count_waiting(tenant) == 2  # the queued ones: pending and waiting
