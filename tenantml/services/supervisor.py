"""The training master as one loop: every tick it schedules, watches, fails over and finalizes
every active request at once (issue #8, items 1, 3 and 4).

Before, each request held a master flow run of its own for its whole life: a process and about
70 MB each, polling Prefect for its attempt's state twice a second, so 50 queued requests brought
the embedded Prefect server to "database is locked". Now a tick is two reads of the metadata
(every supervised request with its attempts, in one query each) and one read of Prefect (the
states of all the working runs, in one filtered call), whatever the number of requests.

A tick, in order:

1. **Watch.** Liveness is judged by observation, not by comparing clocks: the supervisor notes
   when it last saw each request's heartbeat *change*, on its own monotonic clock, so a worker on
   a host with a skewed clock is neither fenced early nor kept late. A worker's own report of why
   it stopped, an operator's move, a run that ended without completing, or a silence longer than
   the timeout is a UUID event.
2. **Fail over.** What follows a UUID event is the domain's decision
   (:mod:`tenantml.domain.failover`): fail, or end the attempt and queue the request again for the
   class it should resume on. Queuing clears the UUID, so the old worker is fenced at once; the
   next attempt gets a new UUID and a new epoch when the scheduler starts it, in this same tick if a
   slot is free (which keeps kill-to-running as fast as before).
3. **Schedule.** The queued requests, the working ones and the free slots per class go to
   :func:`tenantml.domain.scheduling.plan`: weighted fair share across the waiting tenants, first
   come first served within one, work-conserving, with the tenants' running limits. Starts open
   an attempt (compare-and-set on the epoch) and dispatch its worker run; preemptions set a flag
   the worker reads with its next heartbeat, after which it commits a checkpoint and hands back
   exactly as on SIGTERM: no step lost, no budget used.
4. **Finalize** requests that ended (promotion, clean-up), on the finalizer's executor so that a
   slow MLflow never holds up a dispatch.

Nothing lives only in memory: a supervisor that restarts, or a standby that takes the lease over
(:func:`supervise`), rebuilds its view from the store and merely starts observing afresh.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from tenantml.domain.failover import Fail, UuidEvent, decide, memory_kill
from tenantml.domain.request import AttemptEnd, Lease, RequestStatus, TrainingRequest, WorkerClass
from tenantml.domain.scheduling import Plan, Policy, Running, Waiting, plan
from tenantml.domain.tenant import effective_limits
from tenantml.domain.usage import usage_by_tenant
from tenantml.errors import StaleEpoch
from tenantml.ports import Capacity, Dispatcher, MemoryKills, RequestStore, RunLog, RunState, SupervisorStore
from tenantml.settings import SchedulerSettings, TrainingSettings

__all__ = ["LEASE", "Finalizer", "Tick", "TrainingSupervisor", "supervise"]

log = logging.getLogger(__name__)

LEASE = "training-supervisor"
LIMITS_REFRESH_S = 5.0  # running limits and recent usage are re-read this often, not every tick


class Finalizer(Protocol):
    def finalize(self, request: TrainingRequest) -> None: ...


class SupervisedStore(SupervisorStore, RequestStore, Protocol):
    """The supervisor's writes, and the reads of recent history its fair share uses for ties."""


class _Inline(Executor):
    """Runs each job at once, in the caller's thread (the default; tests and one-shot ticks)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future[object] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001  # handed to the caller through the future
            future.set_exception(err)
        return future


class _Silent:
    def note(self, flow_run_id: str | None, message: str, warning: bool = False) -> None:
        pass


@dataclass
class Tick:
    """What one tick did, for logs, benchmarks and tests."""

    at: datetime
    supervised: int = 0
    events: list[tuple[str, AttemptEnd]] = field(default_factory=list)
    plan: Plan = field(default_factory=Plan)
    seconds: float = 0.0


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Seen:
    observed: tuple[int, object, int]  # (epoch, heartbeat, step) last observed
    at: float  # on the supervisor's clock


class TrainingSupervisor:
    def __init__(
        self,
        store: SupervisedStore,
        dispatcher: Dispatcher,
        finalizer: Finalizer,
        capacity: Capacity,
        settings: TrainingSettings,
        scheduler: SchedulerSettings | None = None,
        on_change: Callable[[TrainingRequest], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        finalizing: Executor | None = None,
        default_max_running: int | None = None,
        run_log: RunLog | None = None,
        memory_kills: MemoryKills | None = None,
    ) -> None:
        """``on_change`` is called with a request whenever its status or attempts changed (the
        Prefect attempts table); ``finalizing`` runs the finalizer (inline unless given);
        ``default_max_running`` is the running limit of a tenant without one of its own; ``run_log``
        gets each decision in words, for the log of the attempt's run; ``memory_kills`` tells a crash
        the platform's OOM killer caused (a resource failure) from any other."""
        self.store, self.dispatcher, self.finalizer, self.capacity = store, dispatcher, finalizer, capacity
        self.settings, self.scheduler = settings, scheduler or SchedulerSettings()
        self.on_change = on_change or (lambda request: None)
        self.clock, self.default_max_running = clock, default_max_running
        self.finalizing = finalizing or _Inline()
        self.run_log, self.memory_kills = run_log or _Silent(), memory_kills
        self._seen: dict[str, _Seen] = {}
        self._shown: dict[str, tuple[object, ...]] = {}
        self._finals: dict[str, Future[object]] = {}
        self._policy: tuple[float, Mapping[str, int | None], Mapping[str, float]] | None = None

    # -- the tick --------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> Tick:
        started, now = self.clock(), now or _now()
        report = Tick(now)
        requests = self.store.supervised()
        report.supervised = len(requests)
        working = [request for request in requests if request.status.is_working]
        states = self._states(working)
        for request in working:
            attempt = request.current_attempt
            if attempt is None:
                continue
            if attempt.flow_run_id is None and attempt.end is None:  # opened, never dispatched: try again
                self._dispatch(request, Lease(request.id, attempt.worker_uuid, attempt.epoch), attempt.worker_class)
                continue
            event = self.detect(request, states.get(attempt.flow_run_id or ""))
            if event is not None and self.fail_over(request, event, now):
                report.events.append((request.id, event.end))
        if report.events:
            requests = self.store.supervised()
        report.plan = self._schedule(requests, now)
        for request in requests:
            if request.status.is_terminal and request.finalized_at is None:
                self._finalize(request)
        self._show(requests, report)
        self._forget({request.id for request in requests})
        report.seconds = self.clock() - started
        return report

    # -- watch ---------------------------------------------------------------------------
    def _states(self, working: list[TrainingRequest]) -> Mapping[str, tuple[RunState, str]]:
        runs = [a.flow_run_id for r in working if (a := r.current_attempt) is not None and a.flow_run_id]
        return self.dispatcher.run_states(runs) if runs else {}

    def detect(self, request: TrainingRequest, run: tuple[RunState, str] | None) -> UuidEvent | None:
        event, kills = self._detect(request, run), self.memory_kills
        run_id = request.current_attempt.flow_run_id if request.current_attempt else None
        return memory_kill(event, lambda: kills.memory_kill(run_id) if kills and run_id else None) if event else None

    def _detect(self, request: TrainingRequest, run: tuple[RunState, str] | None) -> UuidEvent | None:
        attempt = request.current_attempt
        if attempt is None or attempt.flow_run_id is None:
            return None
        if attempt.end is not None:  # the worker said why it stopped, or finished since the tick read the request
            return self._run_ended(request, RunState.FINISHED, "")
        if request.move_requested:
            return UuidEvent(AttemptEnd.MOVED, "moved by an operator")
        state, message = run or (RunState.UNKNOWN, "")
        if state in (RunState.FAILED, RunState.FINISHED):
            return self._run_ended(request, state, message)
        observed, now = (request.epoch, request.heartbeat_at, request.step), self.clock()
        seen = self._seen.get(request.id)
        if seen is None or seen.observed != observed:
            self._seen[request.id] = _Seen(observed, now)
            return None
        if state is RunState.WAITING:
            seen.at = now  # queued for a worker: not lost, just waiting for it to poll
            return None
        silent = now - seen.at
        limit = self.settings.heartbeat_timeout_s if request.heartbeat_at else self.settings.start_timeout_s
        if silent > limit:
            return UuidEvent(AttemptEnd.HEARTBEAT_LOST, f"no heartbeat for {silent:.1f} s (worker {attempt.worker_uuid})")
        return None

    def _run_ended(self, request: TrainingRequest, state: RunState, message: str) -> UuidEvent | None:
        fresh = self.store.get_request(request.id)  # the worker may have finished the request just now
        if fresh.status.is_terminal or fresh.epoch != request.epoch:
            return None
        reported = fresh.current_attempt
        if reported is not None and reported.end is not None:  # ... or said why just before its run ended
            return UuidEvent(reported.end, reported.reason or reported.end.value)
        return UuidEvent(AttemptEnd.CRASHED, f"worker run {state.value}: {message}".rstrip(": "))

    # -- fail over -------------------------------------------------------------------------
    def fail_over(self, request: TrainingRequest, event: UuidEvent, now: datetime) -> bool:
        """Fail the request, or end its attempt and queue it for the next one; False if it had moved on."""
        attempt = request.current_attempt
        if attempt is None:
            return False
        decision = decide(request, event, self.settings.attempt_budget)
        try:
            if isinstance(decision, Fail):
                self.store.finish(request.id, request.epoch, RequestStatus.FAILED, now, decision.reason, event.end)
                self.run_log.note(attempt.flow_run_id, f"UUID event {event.end.value} ({event.reason}): "
                                  f"the request fails: {decision.reason}", warning=True)
            else:
                self.store.requeue(request.id, request.epoch, decision.worker_class, now, event.end, event.reason)
                at = request.checkpoint.step if request.checkpoint else 0
                log.warning("request %s: UUID event %s (%s); queued to resume from step %s on %s",
                            request.id, event.end.value, event.reason, at, decision.worker_class.value)
                self.run_log.note(attempt.flow_run_id, f"UUID event {event.end.value} ({event.reason}): worker "
                                  f"{attempt.worker_uuid} is fenced off; the request is queued to resume from step "
                                  f"{at} on the {decision.worker_class.value} class", warning=event.end.is_failover)
        except StaleEpoch:
            return False  # somebody else (a worker finishing, an operator's cancel) moved first
        self._seen.pop(request.id, None)
        if attempt.flow_run_id and attempt.end is None:  # a worker that reported its end is stopping by itself
            self.dispatcher.cancel(attempt.flow_run_id)
        return True

    # -- schedule --------------------------------------------------------------------------
    def _schedule(self, requests: list[TrainingRequest], now: datetime) -> Plan:
        queued = [request for request in requests if request.status.is_queued]
        if not queued:
            return Plan()
        working = [request for request in requests if request.status.is_working and request.current_attempt]
        slots = dict(self.capacity.slots())
        free = {name: slots.get(name, 0) for name in {*slots, *(c.value for c in WorkerClass)}}
        running = []
        for request in working:
            attempt = request.current_attempt
            assert attempt is not None
            name = attempt.worker_class.value
            free[name] = free.get(name, 0) - 1
            running.append(Running(request.id, request.tenant, name, attempt.started_at, request.preempt_requested))
        waiting = [Waiting(r.id, r.tenant, r.worker_class.value, r.created_at, r.queued_at or r.created_at)
                   for r in queued]
        policy, usage = self._policy_now(now, {r.tenant for r in queued} | {r.tenant for r in working})
        decided = plan(waiting, running, {name: max(count, 0) for name, count in free.items()}, now, policy, usage)
        by_id = {request.id: request for request in requests}
        for start in decided.starts:
            self._start(by_id[start.request_id], now)
        for preemption in decided.preemptions:
            request = by_id[preemption.request_id]
            if self.store.request_preemption(request.id, request.epoch, preemption.reason, now):
                log.info("request %s: preempting its attempt: %s", request.id, preemption.reason)
                current = request.current_attempt
                self.run_log.note(current.flow_run_id if current else None,
                                  f"asked to checkpoint and hand back for fair share: {preemption.reason}")
        return decided

    def _policy_now(self, now: datetime, tenants: set[str]) -> tuple[Policy, Mapping[str, float]]:
        """The tenants' running limits and recent usage; both are re-read every few seconds (they
        change slowly), and a tenant newer than the last read gets the default limit meanwhile."""
        at = self.clock()
        if self._policy is None or at - self._policy[0] >= LIMITS_REFRESH_S:
            since = now - timedelta(seconds=self.scheduler.usage_window_s)
            used = usage_by_tenant(self.store.requests_touched_since(since), since, now)
            usage = {tenant: sum(u.worker_seconds.values()) for tenant, u in used.items()}
            self._policy = (at, self.store.running_limits(), usage)
        own = {**dict.fromkeys(tenants), **self._policy[1]}
        policy = Policy(
            limits=effective_limits(own, self.default_max_running),
            preempt_after_s=self.scheduler.preempt_after_s,
            preemption=self.scheduler.preemption,
        )
        return policy, self._policy[2]

    def _start(self, request: TrainingRequest, now: datetime) -> None:
        worker_uuid = str(uuid.uuid4())
        try:
            epoch = self.store.start_attempt(request.id, request.epoch, worker_uuid, request.worker_class, now)
        except StaleEpoch:  # cancelled, or another supervisor started it just now
            return
        self._dispatch(request, Lease(request.id, worker_uuid, epoch), request.worker_class, len(request.attempts) + 1)

    def _dispatch(self, request: TrainingRequest, lease: Lease, worker_class: WorkerClass,
                  number: int | None = None) -> None:
        """Start the attempt's worker run; on an API error the next tick tries again (same idempotency key)."""
        number = number or len(request.attempts)
        name = f"{request.tenant}/{request.model} attempt {number} ({worker_class.value})"
        tags = [f"request:{request.id}", f"tenant:{request.tenant}", f"model:{request.model}"]
        try:
            flow_run_id = self.dispatcher.dispatch(lease, worker_class, name, tags)
        except Exception as err:
            log.warning("request %s: dispatching epoch %s failed (%s); retrying", lease.request_id, lease.epoch, err)
            return
        self.store.set_attempt_flow_run(lease.request_id, lease.epoch, flow_run_id)
        self._seen[request.id] = _Seen((lease.epoch, None, request.step), self.clock())
        resume = f", resuming from step {request.checkpoint.step}" if request.checkpoint else ""
        self.run_log.note(flow_run_id, f"dispatched attempt {number} of {request.tenant}/{request.model} to a "
                          f"{worker_class.value} worker: UUID {lease.worker_uuid}, lease {lease.epoch}{resume}")

    # -- finalize, show, forget --------------------------------------------------------------
    def _finalize(self, request: TrainingRequest) -> None:
        running = self._finals.get(request.id)
        if running is not None and not running.done():
            return
        self._finals[request.id] = self.finalizing.submit(self._finalize_now, request)

    def _finalize_now(self, request: TrainingRequest) -> None:
        try:
            self.finalizer.finalize(request)
            self.store.mark_finalized(request.id, _now())
        except Exception:  # MLflow or the database is down: the next tick tries again
            log.warning("request %s: finalization failed; retrying", request.id, exc_info=True)
            return
        final = self.store.get_request(request.id)
        attempt = final.current_attempt
        outcome = f"version {final.model_version} registered" if final.model_version else final.status.value
        self.run_log.note(attempt.flow_run_id if attempt else None,
                          f"finalized: {outcome} ({final.spec.promotion} promotion), checkpoints pruned")
        self.on_change(final)

    def _show(self, before: list[TrainingRequest], report: Tick) -> None:
        """Tell ``on_change`` about every request whose status or attempts moved since the last tick."""
        touched = {request_id for request_id, _ in report.events} | {s.request_id for s in report.plan.starts}
        current = self.store.supervised() if touched else before
        for request in current:
            attempt = request.current_attempt
            view = (request.status, request.epoch, len(request.attempts),
                    attempt.running_at is not None if attempt else None, request.preempt_requested)
            if self._shown.get(request.id) != view:
                self._shown[request.id] = view
                self.on_change(request)

    def _forget(self, supervised: set[str]) -> None:
        for known in (self._seen, self._shown, self._finals):
            for request_id in [key for key in known if key not in supervised]:
                del known[request_id]


def supervise(
    supervisor: TrainingSupervisor,
    holder: str,
    stop: Callable[[float], bool],
    interval_s: float,
    stale_after_s: float,
    on_tick: Callable[[Tick], None] | None = None,
    release: Callable[[], bool] = lambda: True,
) -> None:
    """Tick while holding the supervisor lease, until ``stop(seconds)`` (a wait) says so; then give
    the lease up unless ``release()`` says not to (a standby then takes over once it is stale).

    One supervisor works at a time: the lease in the store is a compare-and-set on its heartbeat,
    and a standby takes it over once it is ``stale_after_s`` old (the holder died or hung). Should
    two ever tick at once (a holder that hung past the timeout and woke up), every write they make
    is a compare-and-set on the epoch and every dispatch has the attempt's idempotency key, so at
    most one of them starts each attempt. A failing tick (database or Prefect unreachable) is
    logged and tried again after a backoff of up to ten intervals.
    """
    store, holding, failures = supervisor.store, False, 0
    try:
        while True:
            wait = interval_s
            try:
                held = store.hold_lease(LEASE, holder, _now(), stale_after_s)
                if held != holding:
                    log.warning("%s the supervisor lease as %s", "took" if held else "lost", holder)
                    holding = held
                if held:
                    tick = supervisor.tick()
                    if on_tick is not None:
                        on_tick(tick)
                failures = 0
            except Exception:
                failures += 1
                wait = min(interval_s * 2 ** failures, interval_s * 10)
                log.warning("supervisor tick failed (%d in a row); next try in %.1f s", failures, wait, exc_info=True)
            if stop(wait):
                return
    finally:
        if holding and release():
            try:
                store.release_lease(LEASE, holder)
            except Exception:
                log.warning("could not release the supervisor lease", exc_info=True)
