"""The failover decision (claims 4, 5 and 7), on plain domain objects: no store, no clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tenantml.domain.admission import Decision, judge
from tenantml.domain.failover import Fail, Resume, UuidEvent, decide, failures_without_progress, next_worker_class
from tenantml.domain.request import (
    Attempt,
    AttemptEnd,
    Checkpoint,
    RequestStatus,
    TrainingRequest,
    TrainingSpec,
    WorkerClass,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SPEC = TrainingSpec("acme", "churn", "/d/acme/churn.csv", "label", "sgd_classifier", {"epochs": 3}, "f" * 64)


def request_with(*ends: AttemptEnd | None, worker_class: WorkerClass = WorkerClass.SMALL) -> TrainingRequest:
    """A running request whose attempts ended as ``ends`` (the last one is the current attempt)."""
    attempts = [
        Attempt(number, number, f"uuid-{number}", worker_class, T0, flow_run_id=f"run-{number}", end=end)
        for number, end in enumerate(ends, start=1)
    ]
    return TrainingRequest("r-1", SPEC, RequestStatus.RUNNING, T0, T0, epoch=len(ends), attempts=attempts)


def test_a_user_error_fails_at_once_whatever_the_budget() -> None:
    decision = decide(request_with(None), UuidEvent(AttemptEnd.USER_ERROR, "target column 'y' is missing"), budget=3)
    assert decision == Fail("target column 'y' is missing")


@pytest.mark.parametrize("end", [AttemptEnd.CRASHED, AttemptEnd.HEARTBEAT_LOST, AttemptEnd.PREEMPTED, AttemptEnd.MOVED])
def test_lost_and_handed_back_work_resumes_on_the_same_class(end: AttemptEnd) -> None:
    assert decide(request_with(None, worker_class=WorkerClass.LARGE), UuidEvent(end, "x"), budget=3) == Resume(
        WorkerClass.LARGE
    )


def test_a_resource_failure_escalates_to_the_large_class() -> None:
    assert decide(request_with(None), UuidEvent(AttemptEnd.RESOURCE_EXHAUSTED, "oom"), budget=3) == Resume(
        WorkerClass.LARGE
    )
    assert next_worker_class(WorkerClass.LARGE, AttemptEnd.RESOURCE_EXHAUSTED) is WorkerClass.LARGE


def test_the_failure_over_the_budget_fails_the_request_with_the_story() -> None:
    request = request_with(AttemptEnd.CRASHED, AttemptEnd.HEARTBEAT_LOST, None)
    assert isinstance(decide(request, UuidEvent(AttemptEnd.CRASHED, "killed"), budget=3), Resume)
    decision = decide(request, UuidEvent(AttemptEnd.CRASHED, "killed"), budget=2)
    assert decision == Fail("gave up after 3 attempts (3 failures without a new checkpoint); last: killed")


def test_failures_after_a_new_checkpoint_start_the_count_afresh() -> None:
    request = request_with(*[AttemptEnd.CRASHED] * 5, None)
    for number, attempt in enumerate(request.attempts, start=1):
        attempt.resume_step = 100 * (number - 1)  # every attempt committed a checkpoint before it died
    request.checkpoint = Checkpoint("file:///ck", 550, "c" * 64)
    assert failures_without_progress(request, UuidEvent(AttemptEnd.CRASHED, "killed")) == 1
    assert decide(request, UuidEvent(AttemptEnd.CRASHED, "killed"), budget=1) == Resume(WorkerClass.SMALL)


def test_failures_before_any_new_checkpoint_add_up() -> None:
    request = request_with(AttemptEnd.CRASHED, AttemptEnd.CRASHED, None)
    request.attempts[1].resume_step = request.attempts[2].resume_step = 40  # the first one got to step 40, then no more
    request.checkpoint = Checkpoint("file:///ck", 40, "c" * 64)
    assert failures_without_progress(request, UuidEvent(AttemptEnd.CRASHED, "killed")) == 3
    assert isinstance(decide(request, UuidEvent(AttemptEnd.CRASHED, "killed"), budget=2), Fail)


def test_preemptions_and_moves_use_no_budget() -> None:
    request = request_with(AttemptEnd.PREEMPTED, AttemptEnd.MOVED, AttemptEnd.PREEMPTED, None)
    assert decide(request, UuidEvent(AttemptEnd.CRASHED, "killed"), budget=1) == Resume(WorkerClass.SMALL)
    assert request.failovers == 0


def test_a_worker_report_of_the_same_end_is_counted_once() -> None:
    reported = request_with(AttemptEnd.CRASHED, AttemptEnd.CRASHED)  # the current attempt already said "crashed"
    assert decide(reported, UuidEvent(AttemptEnd.CRASHED, "killed"), budget=2) == Resume(WorkerClass.SMALL)


def test_admission_judges_by_status_then_by_fingerprint() -> None:
    running = request_with(None)
    done = TrainingRequest("r-0", SPEC, RequestStatus.COMPLETED, T0, T0, model_version="4")
    assert judge(SPEC, False, running, done)[0] is Decision.DUPLICATE
    decision, message = judge(SPEC, False, None, done)
    assert decision is Decision.UP_TO_DATE and "request r-0 (version 4)" in message
    assert judge(SPEC, True, None, done)[0] is Decision.ACCEPTED
    changed = TrainingSpec(**{**SPEC.__dict__, "params": {"epochs": 4}})
    assert judge(changed, False, None, done)[0] is Decision.ACCEPTED
