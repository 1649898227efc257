"""The training supervisor's watch and failover, driven by a fake dispatcher and a fake clock
(nothing really sleeps).

Each test scripts the workers as a generator (see tests/support/supervisor_script.py), so a
script reads as a timeline.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime

import pytest

from tenantml.adapters.store import Store
from tenantml.domain.request import AttemptEnd, RequestStatus, TrainingRequest, WorkerClass
from tenantml.ports import RunState
from tests.support.supervisor_script import (
    INTERVAL,
    START_TIMEOUT,
    TIMEOUT,
    Loop,
    Script,
    ends,
)


def test_first_attempt_is_dispatched_on_the_small_class(store: Store, request_id: str) -> None:
    master = Loop(store)

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
    assert final.status is RequestStatus.COMPLETED
    assert dispatch.name.endswith("/churn attempt 1 (small)") and f"request:{request_id}" in dispatch.tags
    [attempt] = final.attempts
    assert (attempt.worker_uuid, attempt.flow_run_id, attempt.end) == (
        dispatch.worker_uuid, "run-1", AttemptEnd.COMPLETED
    )
    assert [r.id for r in master.finalizer.finalized] == [final.id]
    assert master.dispatcher.cancelled == []


def test_lost_heartbeat_is_detected_only_after_the_timeout_of_unchanged_heartbeat(
    store: Store, request_id: str
) -> None:
    master = Loop(store)
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
    master = Loop(store)
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
    master = Loop(store)

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
    master = Loop(store, budget=1)  # one failover allowed: the report must use exactly one

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
    """The worker reports and exits between the supervisor's read of the request and its poll of the run."""
    master = Loop(store)
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
    master = Loop(store, budget=0)  # any failover would fail the request

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
    assert master.dispatcher.cancelled == ["run-1"]  # the preempted worker stops by itself


def test_exhausted_budget_fails_the_request_naming_the_attempts(store: Store, request_id: str) -> None:
    master = Loop(store, budget=2)
    master.dispatcher.initial_state = RunState.FAILED, "Crashed"  # a poison request: every worker dies

    final = master.run(request_id)
    assert len(master.dispatcher.dispatches) == 3
    assert final.status is RequestStatus.FAILED
    assert "after 3 attempts" in (final.reason or "") and "Crashed" in (final.reason or "")
    assert ends(final) == [AttemptEnd.CRASHED] * 3
    assert all(attempt.ended_at is not None for attempt in final.attempts)
    assert (final.worker_uuid, [r.id for r in master.finalizer.finalized]) == (None, [final.id])


def test_failures_each_after_a_new_checkpoint_never_exhaust_the_budget(store: Store, request_id: str) -> None:
    master = Loop(store, budget=2)

    def script() -> Script:
        for number in range(1, 6):  # five workers die, each after committing a checkpoint of its own
            yield from master.until_dispatched(number)
            worker = master.worker(number)
            worker.checkpoint(number * 3)
            worker.beat(number * 3 + 1)
            yield
            master.dispatcher.states[f"run-{number}"] = RunState.FAILED, "Crashed: spot reclaimed"
        yield from master.until_dispatched(6)
        master.worker(6).complete()

    final = master.run(request_id, script())
    assert final.status is RequestStatus.COMPLETED
    assert ends(final) == [AttemptEnd.CRASHED] * 5 + [AttemptEnd.COMPLETED]
    assert [a.resume_step for a in final.attempts] == [0, 3, 6, 9, 12, 15]


def test_user_error_fails_at_once_without_using_the_budget(store: Store, request_id: str) -> None:
    master = Loop(store)

    def script() -> Script:
        master.worker(1).report(AttemptEnd.USER_ERROR, "target column 'y' is not in the dataset")
        yield

    final = master.run(request_id, script())
    assert len(master.dispatcher.dispatches) == 1
    assert (final.status, final.reason) == (RequestStatus.FAILED, "target column 'y' is not in the dataset")
    assert ends(final) == [AttemptEnd.USER_ERROR]


class RecordedLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str | None, str]] = []

    def note(self, flow_run_id: str | None, message: str, warning: bool = False) -> None:
        self.lines.append((flow_run_id, message))


def test_each_decision_is_logged_into_the_attempts_own_run(store: Store, request_id: str) -> None:
    master = Loop(store)
    master.supervisor.run_log = recorded = RecordedLog()

    def script() -> Script:
        master.worker(1).checkpoint(4)
        master.worker(1).beat(5)
        yield
        master.dispatcher.states["run-1"] = RunState.FAILED, "Crashed: process killed"
        yield from master.until_dispatched(2)
        master.worker(2).complete()

    master.run(request_id, script())
    runs = [run for run, _ in recorded.lines]
    assert runs == ["run-1", "run-1", "run-2", "run-2"]
    dispatched, event, resumed, finalized = (message for _, message in recorded.lines)
    assert dispatched.startswith("dispatched attempt 1 of ") and "to a small worker: UUID" in dispatched
    assert "UUID event crashed" in event and "queued to resume from step 4 on the small class" in event
    assert "dispatched attempt 2" in resumed and resumed.endswith("resuming from step 4")
    assert finalized.startswith("finalized: version 1 registered")


def test_a_request_completed_between_the_ticks_reads_is_not_failed_over(
    store: Store, request_id: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tick reads the requests, then their attempts: a worker completing in between shows a running
    request whose attempt ended completed. That is no UUID event (seen in bench_drain: "UUID event
    completed (completed); queued to resume from step 3200")."""
    master = Loop(store)
    supervised = store.supervised

    def read_between() -> list[TrainingRequest]:
        return [dataclasses.replace(r, status=RequestStatus.RUNNING) if r.id == request_id else r for r in supervised()]

    def script() -> Script:
        master.worker(1).beat(1)
        yield
        master.worker(1).complete()
        monkeypatch.setattr(store, "supervised", read_between)
        yield
        monkeypatch.setattr(store, "supervised", supervised)

    with caplog.at_level(logging.WARNING, logger="tenantml.services.supervisor"):
        final = master.run(request_id, script())
    assert ends(final) == [AttemptEnd.COMPLETED] and final.status is RequestStatus.COMPLETED
    assert not [r.getMessage() for r in caplog.records if "UUID event" in r.getMessage()]
    assert master.dispatcher.cancelled == []
