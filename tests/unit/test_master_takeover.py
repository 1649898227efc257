"""A training master that takes over a request: after a restart, a lost race or another master's claim."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tenantml.adapters.store import Store
from tenantml.domain.request import AttemptEnd, Lease, RequestStatus, WorkerClass
from tenantml.errors import StaleEpoch
from tenantml.ports import RunState
from tests.support.master_script import (
    INTERVAL,
    SKEWED,
    TIMEOUT,
    Dispatch,
    Master,
    Script,
    Worker,
    ends,
)


def test_restarted_master_dispatches_an_attempt_opened_but_never_dispatched(store: Store, request_id: str) -> None:
    worker_uuid = str(uuid.uuid4())
    store.start_attempt(request_id, 0, worker_uuid, WorkerClass.LARGE, datetime.now(UTC))  # then the master died
    master = Master(store)

    def script() -> Script:
        master.worker(1).complete()
        yield

    final = master.run(request_id, script())
    [dispatch] = master.dispatcher.dispatches
    assert (dispatch.worker_uuid, dispatch.epoch, dispatch.worker_class) == (worker_uuid, 1, WorkerClass.LARGE)
    assert len(final.attempts) == 1 and final.attempts[0].flow_run_id == "run-1"
    assert final.status is RequestStatus.COMPLETED


def test_restarted_master_keeps_watching_the_running_attempt(store: Store, request_id: str) -> None:
    worker_uuid = str(uuid.uuid4())
    store.start_attempt(request_id, 0, worker_uuid, WorkerClass.SMALL, datetime.now(UTC))
    store.set_attempt_flow_run(request_id, 1, "run-old")
    lease = Dispatch(request_id, worker_uuid, 1, WorkerClass.SMALL, "run-old", 0.0)
    Worker(store, lease).beat(1)  # long ago, by the master's reckoning
    master = Master(store)
    master.dispatcher.states["run-old"] = RunState.RUNNING, ""

    def script() -> Script:
        for step in range(2, 30):
            Worker(store, lease).beat(step)
            yield
        Worker(store, lease).complete()

    final = master.run(request_id, script(), master_id="master-2")
    assert master.dispatcher.dispatches == [] and master.dispatcher.cancelled == []
    assert final.status is RequestStatus.COMPLETED and len(final.attempts) == 1
    assert final.master_flow_run_id == "master-2"


def test_restarted_master_fences_a_dead_worker_after_its_own_timeout(store: Store, request_id: str) -> None:
    store.start_attempt(request_id, 0, str(uuid.uuid4()), WorkerClass.SMALL, datetime.now(UTC))
    store.set_attempt_flow_run(request_id, 1, "run-old")
    store.heartbeat(Lease(request_id, store.get_request(request_id).worker_uuid or "", 1), 3, 20, SKEWED)
    master = Master(store)
    master.dispatcher.states["run-old"] = RunState.RUNNING, ""

    def script() -> Script:
        yield from master.until_dispatched(1)
        master.worker(1).complete()

    final = master.run(request_id, script())
    assert TIMEOUT < master.dispatcher.dispatches[0].at - 100.0 <= TIMEOUT + 2 * INTERVAL
    assert ends(final) == [AttemptEnd.HEARTBEAT_LOST, AttemptEnd.COMPLETED]
    assert master.dispatcher.cancelled == ["run-old"]


def test_master_stops_when_another_master_claims_the_request(store: Store, request_id: str) -> None:
    master = Master(store)

    def script() -> Script:
        for step in range(1, 4):
            master.worker(1).beat(step)
            yield
        store.claim_master(request_id, "master-2", datetime.now(UTC))
        for step in range(4, 100):
            master.worker(1).beat(step)
            yield

    final = master.run(request_id, script())
    assert final.status is RequestStatus.RUNNING and master.ticks < 10
    assert len(master.dispatcher.dispatches) == 1 and master.dispatcher.cancelled == []
    assert master.finalizer.finalized == []
    assert store.get_request(request_id).master_flow_run_id == "master-2"


def test_master_losing_the_race_to_start_the_first_attempt_keeps_watching(store: Store, request_id: str) -> None:
    """Two masters saw no attempt; the other one opened it first, so this one must watch, not crash."""
    other_uuid = str(uuid.uuid4())
    original = store.start_attempt

    def raced(*args: object, **kwargs: object) -> int:
        store.start_attempt = original  # type: ignore[method-assign]
        original(request_id, 0, other_uuid, WorkerClass.SMALL, datetime.now(UTC))
        store.set_attempt_flow_run(request_id, 1, "run-other")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    store.start_attempt = raced  # type: ignore[method-assign]
    master = Master(store)
    master.dispatcher.states["run-other"] = RunState.RUNNING, ""
    lease = Dispatch(request_id, other_uuid, 1, WorkerClass.SMALL, "run-other", 0.0)

    def script() -> Script:
        Worker(store, lease).beat(1)
        yield
        Worker(store, lease).complete()

    final = master.run(request_id, script())
    assert master.dispatcher.dispatches == []
    assert final.status is RequestStatus.COMPLETED and [a.worker_uuid for a in final.attempts] == [other_uuid]
    with pytest.raises(StaleEpoch):  # the loser really did lose the compare-and-set
        store.start_attempt(request_id, 0, str(uuid.uuid4()), WorkerClass.SMALL, datetime.now(UTC))


def test_terminal_request_is_finalized_once_without_a_dispatch(store: Store, request_id: str) -> None:
    store.finish(request_id, 0, RequestStatus.CANCELLED, datetime.now(UTC), "cancelled by the tenant")
    master = Master(store)
    final = master.run(request_id)
    assert final.status is RequestStatus.CANCELLED
    assert master.dispatcher.dispatches == [] and master.finalizer.finalized == [final]


def test_a_finalized_request_is_left_alone_by_a_master_started_again(store: Store, request_id: str) -> None:
    store.finish(request_id, 0, RequestStatus.CANCELLED, datetime.now(UTC), "cancelled by the tenant")
    first = Master(store)
    first.run(request_id)
    finalized = store.get_request(request_id)

    again = Master(store)  # e.g. `prefect deployment run training-master/default --param request_id=...`
    final = again.run(request_id, master_id="master-2")
    assert again.finalizer.finalized == [] and again.dispatcher.dispatches == []
    assert final == finalized == store.get_request(request_id)  # not even the master's claim was written
