"""The attempt history and the state of a request, as people read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tenantml.domain.request import (
    Attempt,
    AttemptEnd,
    Checkpoint,
    RequestStatus,
    TrainingRequest,
    TrainingSpec,
    WorkerClass,
)
from tenantml.services.history import attempt_table, describe

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def request(status: RequestStatus, *attempts: Attempt, step: int = 0, version: str | None = None) -> TrainingRequest:
    spec = TrainingSpec("acme", "churn", "/d.csv", "y", "sgd_classifier")
    return TrainingRequest("r-1", spec, status, T0, T0, step=step, attempts=list(attempts), model_version=version,
                           checkpoint=Checkpoint("file:///ck", 115, "c" * 64))


def attempt(number: int, end: AttemptEnd | None = None, resume: int = 0, end_step: int | None = None,
            reason: str | None = None) -> Attempt:
    started = T0 + timedelta(minutes=number)
    return Attempt(number, number, f"{number}" * 8 + "-uuid", WorkerClass.SMALL, started, f"run-{number}",
                   running_at=started + timedelta(seconds=2),
                   ended_at=started + timedelta(seconds=50) if end else None, end=end, reason=reason,
                   resume_step=resume, end_step=end_step)


def test_a_second_attempt_reads_running_and_resumed_not_resuming() -> None:
    second = request(RequestStatus.RESUMING, attempt(1, AttemptEnd.CRASHED, 0, 130), attempt(2, resume=115), step=140)
    assert describe(second) == "running (attempt 2, resumed at step 115)"
    waiting = request(RequestStatus.WAITING, attempt(1, AttemptEnd.PREEMPTED, 0, 115))
    assert describe(waiting) == "waiting to resume at step 115 (attempt 1 preempted)"
    assert describe(request(RequestStatus.PENDING)) == "pending (waiting for a worker)"
    done = request(RequestStatus.COMPLETED, attempt(1, AttemptEnd.COMPLETED, 0, 200), version="3")
    assert describe(done) == "completed (version 3, 1 attempt)"


def test_the_attempts_table_is_narrow_with_short_reasons_and_human_times() -> None:
    long_reason = "Process exited with status code: -9. " * 10
    table = attempt_table(request(RequestStatus.RESUMING, attempt(1, AttemptEnd.CRASHED, 0, 130, long_reason),
                                  attempt(2, resume=115), step=140))
    first, second = table
    assert list(first) == ["#", "worker", "class", "lease", "started", "outcome", "reason", "steps", "redone", "took"]
    assert (first["worker"], first["started"], first["outcome"], first["steps"], first["redone"], first["took"]) == (
        "11111111", "12:01:02", "crashed", "0 → 130", 0, "48 s"
    )
    assert len(str(first["reason"])) == 80 and str(first["reason"]).endswith("…")
    assert (second["outcome"], second["steps"], second["redone"], second["took"]) == ("running", "115 → 140", 15, "")
