"""The training master's watch, driven by a fake dispatcher and a fake clock (nothing really sleeps).

Each test scripts the workers as a generator: the fake ``sleep`` advances the master's clock by the
watch interval and runs the script up to its next ``yield``, so a script reads as a timeline.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from tenantml.adapters.database import create_database
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
from tenantml.errors import StaleEpoch
from tenantml.settings import TrainingSettings
from tenantml.ports import RunState
from tenantml.services.master import TrainingMaster

INTERVAL = 0.5
TIMEOUT = 5.0
START_TIMEOUT = 20.0
# Workers' wall clocks are an hour behind: liveness must not depend on comparing them with the master's.
SKEWED = datetime(2030, 1, 1, tzinfo=UTC) - timedelta(hours=1)

Script = Generator[None, None, None]


def settings(budget: int = 3) -> TrainingSettings:
    return TrainingSettings(
        heartbeat_timeout_s=TIMEOUT, start_timeout_s=START_TIMEOUT, watch_interval_s=INTERVAL, attempt_budget=budget
    )


@dataclass(frozen=True)
class Dispatch:
    request_id: str
    worker_uuid: str
    epoch: int
    worker_class: WorkerClass
    flow_run_id: str
    at: float  # the master's clock

    @property
    def lease(self) -> Lease:
        return Lease(self.request_id, self.worker_uuid, self.epoch)


class FakeDispatcher:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.dispatches: list[Dispatch] = []
        self.states: dict[str, tuple[RunState, str]] = {}
        self.cancelled: list[str] = []
        self.initial_state = RunState.RUNNING, ""
        self.on_run_state: Callable[[str], None] = lambda flow_run_id: None

    def dispatch(self, lease: Lease, worker_class: WorkerClass) -> str:
        flow_run_id = f"run-{len(self.dispatches) + 1}"
        self.dispatches.append(
            Dispatch(lease.request_id, lease.worker_uuid, lease.epoch, worker_class, flow_run_id, self.clock())
        )
        self.states[flow_run_id] = self.initial_state
        return flow_run_id

    def run_state(self, flow_run_id: str) -> tuple[RunState, str]:
        self.on_run_state(flow_run_id)
        return self.states.get(flow_run_id, (RunState.UNKNOWN, "no such flow run"))

    def cancel(self, flow_run_id: str) -> None:
        self.cancelled.append(flow_run_id)


class FakeFinalizer:
    def __init__(self) -> None:
        self.finalized: list[TrainingRequest] = []

    def finalize(self, request: TrainingRequest) -> None:
        self.finalized.append(request)


class Worker:
    """A training worker writing to the store with the lease of one dispatch."""

    def __init__(self, store: Store, dispatch: Dispatch) -> None:
        self.store, self.lease = store, dispatch.lease

    def beat(self, step: int) -> None:
        self.store.heartbeat(self.lease, step, 20, SKEWED + timedelta(seconds=step))

    def checkpoint(self, step: int) -> None:
        self.store.commit_checkpoint(self.lease, Checkpoint(f"file:///ck/{step}", step, "c" * 64), SKEWED)

    def report(self, end: AttemptEnd, reason: str) -> None:
        self.store.report_attempt_end(self.lease, end, reason, SKEWED)

    def complete(self) -> None:
        self.beat(20)
        self.store.complete(self.lease, "1", {"accuracy": 0.9}, SKEWED)


class Master:
    """One training master with a fake clock whose sleep runs the workers' script."""

    def __init__(self, store: Store, budget: int = 3) -> None:
        self.store, self.settings = store, settings(budget)
        self.now = 100.0
        self.ticks = 0
        self.dispatcher = FakeDispatcher(lambda: self.now)
        self.finalizer = FakeFinalizer()
        self.script: Iterator[None] = iter(())

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.ticks += 1
        assert self.ticks < 20_000, "the supervisor never stopped"
        next(self.script, None)

    def run(self, request_id: str, script: Script | None = None, master_id: str = "master-1") -> TrainingRequest:
        self.script = script if script is not None else iter(())
        supervisor = TrainingMaster(self.store, self.dispatcher, self.finalizer, self.settings,
                                clock=lambda: self.now, sleep=self.sleep)
        return supervisor.run(request_id, master_id)

    def worker(self, number: int) -> Worker:
        return Worker(self.store, self.dispatcher.dispatches[number - 1])

    def until_dispatched(self, number: int) -> Script:
        while len(self.dispatcher.dispatches) < number:
            yield
        return None


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    engine = create_database(sqlite_url)
    yield Store(engine)
    engine.dispose()


@pytest.fixture
def request_id(store: Store, tenant_name: str) -> str:
    now = datetime.now(UTC)
    store.add_tenant(tenant_name, hash_api_key(new_api_key()), now)
    spec = TrainingSpec(tenant_name, "churn", "/data/d.csv", "y", "sgd_classifier", {}, "f" * 64)
    request = TrainingRequest(str(uuid.uuid4()), spec, RequestStatus.PENDING, now, now)
    store.add_request(request)
    return request.id


def ends(request: TrainingRequest) -> list[AttemptEnd | None]:
    return [attempt.end for attempt in request.attempts]


def test_first_attempt_is_dispatched_on_the_small_class(store: Store, request_id: str) -> None:
    master = Master(store)

    def script() -> Script:
        for step in range(1, 4):
            master.worker(1).beat(step)
            yield
        master.worker(1).complete()

    final = master.run(request_id, script())
    [dispatch] = master.dispatcher.dispatches
    assert (dispatch.request_id, dispatch.epoch, dispatch.worker_class, dispatch.at) == (
        request_id, 1, WorkerClass.SMALL, 100.0
    )
    assert final.status is RequestStatus.COMPLETED and final.master_flow_run_id == "master-1"
    [attempt] = final.attempts
    assert (attempt.worker_uuid, attempt.flow_run_id, attempt.end) == (
        dispatch.worker_uuid, "run-1", AttemptEnd.COMPLETED
    )
    assert master.finalizer.finalized == [final]
    assert master.dispatcher.cancelled == []


def test_lost_heartbeat_is_detected_only_after_the_timeout_of_unchanged_heartbeat(
    store: Store, request_id: str
) -> None:
    master = Master(store)
    last_beat: list[float] = []

    def script() -> Script:
        for step in range(1, 60):  # 30 s of beats whose timestamps are an hour old: alive all along
            master.worker(1).beat(step)
            last_beat[:] = [master.now]
            yield
        yield from master.until_dispatched(2)
        master.worker(2).complete()

    final = master.run(request_id, script())
    first, second = master.dispatcher.dispatches
    assert TIMEOUT < second.at - last_beat[0] <= TIMEOUT + 2 * INTERVAL
    assert (second.epoch, second.worker_class) == (2, WorkerClass.SMALL)
    assert second.worker_uuid != first.worker_uuid
    assert ends(final) == [AttemptEnd.HEARTBEAT_LOST, AttemptEnd.COMPLETED]
    assert "no heartbeat for" in (final.attempts[0].reason or "")
    assert master.dispatcher.cancelled == ["run-1"]


def test_waiting_run_never_times_out(store: Store, request_id: str) -> None:
    master = Master(store)
    master.dispatcher.initial_state = RunState.WAITING, "Scheduled"
    started: list[float] = []

    def script() -> Script:
        for _ in range(200):  # 1000 s queued for a worker, watched every 5 s
            master.now += 5 - INTERVAL
            yield
        assert len(master.dispatcher.dispatches) == 1
        master.dispatcher.states["run-1"] = RunState.RUNNING, ""
        master.dispatcher.initial_state = RunState.RUNNING, ""
        started.append(master.now)
        yield from master.until_dispatched(2)  # never sends a first heartbeat: the start timeout applies
        master.worker(2).complete()

    final = master.run(request_id, script())
    assert master.dispatcher.dispatches[1].at - started[0] == pytest.approx(START_TIMEOUT, abs=2 * INTERVAL)
    assert ends(final) == [AttemptEnd.HEARTBEAT_LOST, AttemptEnd.COMPLETED]


def test_crashed_run_fails_over_resuming_at_the_checkpoint_on_the_same_class(store: Store, request_id: str) -> None:
    master = Master(store)

    def script() -> Script:
        worker = master.worker(1)
        for step in (1, 2, 3, 4):
            worker.beat(step)
            yield
        worker.checkpoint(4)
        worker.beat(6)
        yield
        master.dispatcher.states["run-1"] = RunState.FAILED, "Crashed: process killed"
        yield from master.until_dispatched(2)
        master.worker(2).complete()

    final = master.run(request_id, script())
    second = master.dispatcher.dispatches[1]
    assert (second.epoch, second.worker_class) == (2, WorkerClass.SMALL)
    first_attempt, second_attempt = final.attempts
    assert first_attempt.end is AttemptEnd.CRASHED and "Crashed: process killed" in (first_attempt.reason or "")
    assert (first_attempt.end_step, second_attempt.resume_step) == (6, 4)
    assert final.steps_redone(second_attempt) == 2
    assert final.status is RequestStatus.COMPLETED
    assert master.dispatcher.cancelled == ["run-1"]


def test_resource_exhausted_reported_by_the_worker_escalates_to_the_large_class(store: Store, request_id: str) -> None:
    master = Master(store, budget=1)  # one failover allowed: the report must use exactly one

    def script() -> Script:
        master.worker(1).beat(1)
        yield
        master.worker(1).report(AttemptEnd.RESOURCE_EXHAUSTED, "out of memory: MemoryError")
        master.dispatcher.states["run-1"] = RunState.FAILED, "Failed"
        yield from master.until_dispatched(2)
        master.worker(2).complete()

    final = master.run(request_id, script())
    assert [d.worker_class for d in master.dispatcher.dispatches] == [WorkerClass.SMALL, WorkerClass.LARGE]
    assert ends(final) == [AttemptEnd.RESOURCE_EXHAUSTED, AttemptEnd.COMPLETED]
    assert final.attempts[0].reason == "out of memory: MemoryError"
    assert final.status is RequestStatus.COMPLETED


def test_resource_report_landing_while_the_run_ends_still_escalates(store: Store, request_id: str) -> None:
    """The worker reports and exits between the master's read of the request and its poll of the run."""
    master = Master(store)
    polls: list[str] = []

    def report_then_die(flow_run_id: str) -> None:
        polls.append(flow_run_id)
        if polls.count("run-1") == 3:
            master.worker(1).report(AttemptEnd.RESOURCE_EXHAUSTED, "killed for memory")
            master.dispatcher.states["run-1"] = RunState.FAILED, "Failed"

    master.dispatcher.on_run_state = report_then_die

    def script() -> Script:
        master.worker(1).beat(1)
        yield from master.until_dispatched(2)
        master.worker(2).complete()

    final = master.run(request_id, script())
    assert master.dispatcher.dispatches[1].worker_class is WorkerClass.LARGE
    assert ends(final) == [AttemptEnd.RESOURCE_EXHAUSTED, AttemptEnd.COMPLETED]


def test_moved_and_preempted_attempts_do_not_use_the_budget(store: Store, request_id: str) -> None:
    master = Master(store, budget=0)  # any failover would fail the request

    def script() -> Script:
        master.worker(1).beat(1)
        yield
        store.request_move(request_id, datetime.now(UTC))
        yield from master.until_dispatched(2)
        master.worker(2).beat(2)
        yield
        master.worker(2).report(AttemptEnd.PREEMPTED, "preempted at step 2")
        master.dispatcher.states["run-2"] = RunState.FINISHED, "Completed"
        yield from master.until_dispatched(3)
        master.worker(3).complete()

    final = master.run(request_id, script())
    assert ends(final) == [AttemptEnd.MOVED, AttemptEnd.PREEMPTED, AttemptEnd.COMPLETED]
    assert [d.worker_class for d in master.dispatcher.dispatches] == [WorkerClass.SMALL] * 3
    assert final.status is RequestStatus.COMPLETED and final.failovers == 0
    assert master.dispatcher.cancelled == ["run-1", "run-2"]


def test_exhausted_budget_fails_the_request_naming_the_attempts(store: Store, request_id: str) -> None:
    master = Master(store, budget=2)
    master.dispatcher.initial_state = RunState.FAILED, "Crashed"  # a poison request: every worker dies

    final = master.run(request_id)
    assert len(master.dispatcher.dispatches) == 3
    assert final.status is RequestStatus.FAILED
    assert "after 3 attempts" in (final.reason or "") and "Crashed" in (final.reason or "")
    assert ends(final) == [AttemptEnd.CRASHED] * 3
    assert all(attempt.ended_at is not None for attempt in final.attempts)
    assert (final.worker_uuid, master.finalizer.finalized) == (None, [final])


def test_user_error_fails_at_once_without_using_the_budget(store: Store, request_id: str) -> None:
    master = Master(store)

    def script() -> Script:
        master.worker(1).report(AttemptEnd.USER_ERROR, "target column 'y' is not in the dataset")
        yield

    final = master.run(request_id, script())
    assert len(master.dispatcher.dispatches) == 1
    assert (final.status, final.reason) == (RequestStatus.FAILED, "target column 'y' is not in the dataset")
    assert ends(final) == [AttemptEnd.USER_ERROR]


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
