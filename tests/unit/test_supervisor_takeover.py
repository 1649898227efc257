"""A training supervisor that takes over: after a restart, a lost race, or another supervisor's lease."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tenantml.adapters.store import Store
from tenantml.domain.request import AttemptEnd, Lease, RequestStatus, WorkerClass
from tenantml.errors import StaleEpoch
from tenantml.ports import RunState
from tenantml.services.supervisor import LEASE, supervise
from tests.support.supervisor_script import (
    INTERVAL,
    SKEWED,
    TIMEOUT,
    Dispatch,
    Loop,
    Script,
    Worker,
    ends,
)


def test_restarted_supervisor_dispatches_an_attempt_opened_but_never_dispatched(store: Store, request_id: str) -> None:
    worker_uuid = str(uuid.uuid4())
    store.start_attempt(request_id, 0, worker_uuid, WorkerClass.LARGE, datetime.now(UTC))  # then the master died
    master = Loop(store)

    def script() -> Script:
        master.worker(1).complete()
        yield

    final = master.run(request_id, script())
    [dispatch] = master.dispatcher.dispatches
    assert (dispatch.worker_uuid, dispatch.epoch, dispatch.worker_class) == (worker_uuid, 1, WorkerClass.LARGE)
    assert len(final.attempts) == 1 and final.attempts[0].flow_run_id == "run-1"
    assert final.status is RequestStatus.COMPLETED


def test_restarted_supervisor_keeps_watching_the_running_attempt(store: Store, request_id: str) -> None:
    worker_uuid = str(uuid.uuid4())
    store.start_attempt(request_id, 0, worker_uuid, WorkerClass.SMALL, datetime.now(UTC))
    store.set_attempt_flow_run(request_id, 1, "run-old")
    lease = Dispatch(request_id, worker_uuid, 1, WorkerClass.SMALL, "run-old", 0.0)
    Worker(store, lease).beat(1)  # long ago, by the master's reckoning
    master = Loop(store)
    master.dispatcher.states["run-old"] = RunState.RUNNING, ""

    def script() -> Script:
        for step in range(2, 30):
            Worker(store, lease).beat(step)
            yield
        Worker(store, lease).complete()

    final = master.run(request_id, script())
    assert master.dispatcher.dispatches == [] and master.dispatcher.cancelled == []
    assert final.status is RequestStatus.COMPLETED and len(final.attempts) == 1


def test_restarted_supervisor_fences_a_dead_worker_after_its_own_timeout(store: Store, request_id: str) -> None:
    store.start_attempt(request_id, 0, str(uuid.uuid4()), WorkerClass.SMALL, datetime.now(UTC))
    store.set_attempt_flow_run(request_id, 1, "run-old")
    store.heartbeat(Lease(request_id, store.get_request(request_id).worker_uuid or "", 1), 3, 20, SKEWED)
    master = Loop(store)
    master.dispatcher.states["run-old"] = RunState.RUNNING, ""

    def script() -> Script:
        yield from master.until_dispatched(1)
        master.worker(1).complete()

    final = master.run(request_id, script())
    assert TIMEOUT < master.dispatcher.dispatches[0].at - 100.0 <= TIMEOUT + 2 * INTERVAL
    assert ends(final) == [AttemptEnd.HEARTBEAT_LOST, AttemptEnd.COMPLETED]
    assert master.dispatcher.cancelled == ["run-old"]


def test_one_supervisor_holds_the_lease_until_its_heartbeat_goes_stale(store: Store) -> None:
    at = datetime.now(UTC)
    assert store.hold_lease("training-supervisor", "a", at, stale_after_s=15)
    assert not store.hold_lease("training-supervisor", "b", at + timedelta(seconds=10), stale_after_s=15)
    assert store.hold_lease("training-supervisor", "a", at + timedelta(seconds=12), stale_after_s=15)  # a beats
    assert not store.hold_lease("training-supervisor", "b", at + timedelta(seconds=26), stale_after_s=15)
    assert store.hold_lease("training-supervisor", "b", at + timedelta(seconds=28), stale_after_s=15)  # a died
    assert not store.hold_lease("training-supervisor", "a", at + timedelta(seconds=29), stale_after_s=15)
    assert store.lease_holder("training-supervisor") == ("b", at + timedelta(seconds=28))
    store.release_lease("training-supervisor", "b")
    assert store.hold_lease("training-supervisor", "a", at + timedelta(seconds=30), stale_after_s=15)


def test_supervise_ticks_only_while_holding_the_lease_and_releases_it_on_stop(store: Store, request_id: str) -> None:
    loop = Loop(store)
    store.hold_lease(LEASE, "other", datetime.now(UTC), stale_after_s=60)
    waits: list[float] = []

    def stop(wait: float) -> bool:
        waits.append(wait)
        if len(waits) == 3:
            store.release_lease(LEASE, "other")  # the other supervisor stops cleanly
        return len(waits) >= 6

    supervise(loop.supervisor, "me", stop, interval_s=0.5, stale_after_s=60)
    assert len(loop.dispatcher.dispatches) == 1  # ticked after it took the lease over, not before
    assert store.get_request(request_id).status is RequestStatus.RUNNING
    assert store.lease_holder(LEASE) is None  # released: a standby need not wait for it to go stale


def test_two_supervisors_ticking_at_once_start_each_attempt_once(store: Store, request_id: str) -> None:
    first, second = Loop(store), Loop(store)
    first.tick()
    second.tick()
    assert len(first.dispatcher.dispatches) == 1 and second.dispatcher.dispatches == []


def test_supervisor_losing_the_race_to_start_the_first_attempt_keeps_watching(store: Store, request_id: str) -> None:
    """Two supervisors saw the request queued; the other opened its attempt first, so this one watches."""
    other_uuid = str(uuid.uuid4())
    original = store.start_attempt

    def raced(*args: object, **kwargs: object) -> int:
        store.start_attempt = original  # type: ignore[method-assign]
        original(request_id, 0, other_uuid, WorkerClass.SMALL, datetime.now(UTC))
        store.set_attempt_flow_run(request_id, 1, "run-other")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    store.start_attempt = raced  # type: ignore[method-assign]
    master = Loop(store)
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
    master = Loop(store)
    final = master.run(request_id)
    assert final.status is RequestStatus.CANCELLED
    assert master.dispatcher.dispatches == [] and [r.id for r in master.finalizer.finalized] == [final.id]


def test_a_finalized_request_is_left_alone_by_a_supervisor_started_again(store: Store, request_id: str) -> None:
    store.finish(request_id, 0, RequestStatus.CANCELLED, datetime.now(UTC), "cancelled by the tenant")
    first = Loop(store)
    first.run(request_id)
    finalized = store.get_request(request_id)

    again = Loop(store)  # e.g. a standby taking the lease over
    final = again.run(request_id)
    assert again.finalizer.finalized == [] and again.dispatcher.dispatches == []
    assert final == finalized == store.get_request(request_id)
