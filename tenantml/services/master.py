"""The training master's watch over one request: dispatch, detect UUID events, fail over.

Liveness is judged by observation, not by comparing clocks: the master notes when it last saw the
heartbeat *change*, on its own monotonic clock. A worker on a host with a skewed clock is neither
killed early nor kept late. Nothing lives only in memory: a restarted master rebuilds its view from
the store and merely starts observing afresh. What follows a UUID event (resume on which class, or
fail) is the domain's decision: :mod:`tenantml.domain.failover`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from tenantml.domain.failover import Fail, UuidEvent, decide
from tenantml.domain.request import AttemptEnd, Lease, RequestStatus, TrainingRequest, WorkerClass
from tenantml.errors import StaleEpoch
from tenantml.ports import Dispatcher, MasterStore, RunState
from tenantml.settings import TrainingSettings

__all__ = ["Finalizer", "TrainingMaster"]

log = logging.getLogger(__name__)


class Finalizer(Protocol):
    def finalize(self, request: TrainingRequest) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


class TrainingMaster:
    def __init__(
        self,
        store: MasterStore,
        dispatcher: Dispatcher,
        finalizer: Finalizer,
        settings: TrainingSettings,
        on_change: Callable[[TrainingRequest], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store, self.dispatcher, self.finalizer, self.settings = store, dispatcher, finalizer, settings
        self.on_change = on_change or (lambda request: None)
        self.clock, self.sleep = clock, sleep
        self._seen: tuple[int, object, int] | None = None  # (epoch, heartbeat, step) last observed
        self._seen_at = 0.0

    def run(self, request_id: str, master_id: str) -> TrainingRequest:
        """Watch the request until it ends (or another master takes it over).

        A request that is finalized already is left exactly as it is: a master started for it
        again (by anyone who reaches the Prefect API) must not promote its version over a champion
        a person chose since, nor touch its run.
        """
        existing = self.store.get_request(request_id)
        if existing.status.is_terminal and existing.finalized_at is not None:
            log.info("request %s ended and was finalized at %s: nothing to do", request_id, existing.finalized_at)
            return existing
        self.store.claim_master(request_id, master_id, _now())
        self._take_over(self.store.get_request(request_id))
        while True:
            request = self.store.get_request(request_id)
            if request.status.is_terminal:
                self.finalizer.finalize(request)
                self.store.mark_finalized(request_id, _now())
                self.on_change(request)
                return request
            if not self.store.master_heartbeat(request_id, master_id, _now()):
                log.warning("request %s was taken over by another master; this one stops", request_id)
                return request
            attempt = request.current_attempt
            if attempt is not None and attempt.flow_run_id is None and attempt.end is None:
                self._dispatch(Lease(request.id, attempt.worker_uuid, attempt.epoch), attempt.worker_class)  # retry
            elif (event := self.detect(request)) is not None:
                self.fail_over(request, event)
                self.on_change(self.store.get_request(request_id))
            self.sleep(self.settings.watch_interval_s)

    def _take_over(self, request: TrainingRequest) -> None:
        """Open the first attempt, or finish what a dead master left half done."""
        if not request.status.is_active:
            return
        attempt = request.current_attempt
        if attempt is None:
            try:
                self._start(request, None, None, WorkerClass.SMALL)
            except StaleEpoch:  # another master opened the first attempt just now: watch it instead
                log.warning("request %s: another master started the first attempt", request.id)
        elif attempt.flow_run_id is None:  # a master died between opening the attempt and dispatching it
            self._dispatch(Lease(request.id, attempt.worker_uuid, attempt.epoch), attempt.worker_class)
        self.on_change(self.store.get_request(request.id))

    def detect(self, request: TrainingRequest) -> UuidEvent | None:
        attempt = request.current_attempt
        if attempt is None or attempt.flow_run_id is None:
            return None
        if attempt.end is not None:  # the worker said why it stopped
            return UuidEvent(attempt.end, attempt.reason or attempt.end.value)
        if request.move_requested:
            return UuidEvent(AttemptEnd.MOVED, "moved by an operator")
        state, message = self.dispatcher.run_state(attempt.flow_run_id)
        if state in (RunState.FAILED, RunState.FINISHED):
            return self._run_ended(request, state, message)
        observed = (request.epoch, request.heartbeat_at, request.step)
        now = self.clock()
        if observed != self._seen:
            self._seen, self._seen_at = observed, now
            return None
        if state is RunState.WAITING:
            self._seen_at = now  # queued for a worker: not lost, just waiting for capacity
            return None
        silent = now - self._seen_at
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

    def fail_over(self, request: TrainingRequest, event: UuidEvent) -> None:
        """Clear the UUID, bump the epoch, mint a new UUID and start the next attempt (or fail)."""
        attempt = request.current_attempt
        if attempt is None:
            return
        decision = decide(request, event, self.settings.attempt_budget)
        try:
            if isinstance(decision, Fail):
                self.store.finish(request.id, request.epoch, RequestStatus.FAILED, _now(), decision.reason, event.end)
            else:
                log.warning("request %s: UUID event %s (%s); resuming from step %s on %s",
                            request.id, event.end.value, event.reason,
                            request.checkpoint.step if request.checkpoint else 0, decision.worker_class.value)
                self._start(request, event.end, event.reason, decision.worker_class)
        except StaleEpoch:
            return  # somebody else (a worker finishing, another master) moved first
        if attempt.flow_run_id:
            self.dispatcher.cancel(attempt.flow_run_id)

    def _start(self, request: TrainingRequest, end: AttemptEnd | None, reason: str | None, worker_class: WorkerClass) -> None:
        worker_uuid = str(uuid.uuid4())
        epoch = self.store.start_attempt(request.id, request.epoch, worker_uuid, worker_class, _now(), end, reason)
        self._dispatch(Lease(request.id, worker_uuid, epoch), worker_class)

    def _dispatch(self, lease: Lease, worker_class: WorkerClass) -> None:
        """Start the attempt's worker run; on an API error the watch loop tries again (same idempotency key)."""
        try:
            flow_run_id = self.dispatcher.dispatch(lease, worker_class)
        except Exception as err:
            log.warning("request %s: dispatching epoch %s failed (%s); retrying", lease.request_id, lease.epoch, err)
            return
        self.store.set_attempt_flow_run(lease.request_id, lease.epoch, flow_run_id)
        self._seen, self._seen_at = None, self.clock()
