"""The training supervisor on a fake dispatcher and a fake clock, with workers scripted as generators.

Between two ticks the harness advances the supervisor's clock by the watch interval and runs the
script up to its next ``yield``, so a test's script reads as a timeline. Workers write to the real
store; the wall clock handed to each tick moves with the fake one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
from tenantml.bootstrap import FixedCapacity
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.ports import RunState
from tenantml.services.supervisor import Tick, TrainingSupervisor
from tenantml.settings import SchedulerSettings, TrainingSettings

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
    at: float  # the supervisor's clock
    name: str = ""
    tags: tuple[str, ...] = ()

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

    def dispatch(self, lease: Lease, worker_class: WorkerClass, name: str | None = None,
                 tags: Sequence[str] = ()) -> str:
        flow_run_id = f"run-{len(self.dispatches) + 1}"
        self.dispatches.append(Dispatch(lease.request_id, lease.worker_uuid, lease.epoch, worker_class, flow_run_id,
                                        self.clock(), name or "", tuple(tags)))
        self.states[flow_run_id] = self.initial_state
        return flow_run_id

    def run_states(self, flow_run_ids: Sequence[str]) -> dict[str, tuple[RunState, str]]:
        for flow_run_id in flow_run_ids:
            self.on_run_state(flow_run_id)
        return {run: self.states[run] for run in flow_run_ids if run in self.states}

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


class Loop:
    """The training supervisor with a fake clock; between ticks the workers' script runs a step."""

    def __init__(self, store: Store, budget: int = 3, slots: Mapping[str, int] | None = None,
                 scheduler: SchedulerSettings | None = None, default_max_running: int | None = None) -> None:
        self.store, self.settings = store, settings(budget)
        self.now = 100.0
        self.wall0 = datetime.now(UTC) - timedelta(seconds=self.now)
        self.ticks = 0
        self.dispatcher = FakeDispatcher(lambda: self.now)
        self.finalizer = FakeFinalizer()
        self.capacity = FixedCapacity(dict(slots or {"small": 2, "large": 1}))
        self.supervisor = TrainingSupervisor(
            store, self.dispatcher, self.finalizer, self.capacity, self.settings, scheduler or SchedulerSettings(),
            clock=lambda: self.now, default_max_running=default_max_running,
        )
        self.script: Iterator[None] = iter(())
        self.last: Tick | None = None

    @property
    def wall(self) -> datetime:
        return self.wall0 + timedelta(seconds=self.now)

    def tick(self) -> Tick:
        self.last = self.supervisor.tick(self.wall)
        return self.last

    def step(self) -> None:
        """Let time pass by one interval and the workers' script run up to its next yield."""
        self.now += INTERVAL
        self.ticks += 1
        assert self.ticks < 20_000, "the request never ended"
        next(self.script, None)

    def run(self, request_id: str, script: Script | None = None) -> TrainingRequest:
        """Tick until the request has ended and been finalized."""
        self.script = script if script is not None else iter(())
        while True:
            self.tick()
            request = self.store.get_request(request_id)
            if request.status.is_terminal and request.finalized_at is not None:
                return request
            self.step()

    def run_until(self, done: Callable[[], bool], script: Script | None = None) -> None:
        self.script = script if script is not None else iter(())
        while True:
            self.tick()
            if done():
                return
            self.step()

    def worker(self, number: int) -> Worker:
        return Worker(self.store, self.dispatcher.dispatches[number - 1])

    def until_dispatched(self, number: int) -> Script:
        while len(self.dispatcher.dispatches) < number:
            yield
        return None


def pending_request(store: Store, tenant: str, model: str = "churn", at: datetime | None = None,
                    new_tenant: bool = True) -> str:
    """A pending training request (of a new tenant unless told otherwise); returns the request's id."""
    now = at or datetime.now(UTC)
    if new_tenant:
        store.add_tenant(tenant, hash_api_key(new_api_key()), now)
    spec = TrainingSpec(tenant, model, "/data/d.csv", "y", "sgd_classifier", {}, "f" * 64)
    request = TrainingRequest(str(uuid.uuid4()), spec, RequestStatus.PENDING, now, now)
    store.add_request(request)
    return request.id


def ends(request: TrainingRequest) -> list[AttemptEnd | None]:
    return [attempt.end for attempt in request.attempts]
