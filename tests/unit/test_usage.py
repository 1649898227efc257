"""Usage per tenant from the attempt history: worker time by class, steps, redone steps, outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tenantml.domain.request import Attempt, AttemptEnd, RequestStatus, TrainingRequest, TrainingSpec, WorkerClass
from tenantml.domain.usage import usage_by_tenant
from tenantml.errors import InvalidRequest
from tenantml.services.usage import parse_window

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def request(tenant: str, attempts: list[Attempt], status: RequestStatus, finished: float | None, step: int = 0
            ) -> TrainingRequest:
    spec = TrainingSpec(tenant, "m", f"/d/{tenant}.csv", "y", "sgd_classifier", {}, "f" * 64)
    return TrainingRequest(f"r-{tenant}-{len(attempts)}", spec, status, T0, T0, step=step, attempts=attempts,
                           finished_at=None if finished is None else at(finished))


def attempt(number: int, worker_class: WorkerClass, start: float, end: float | None, resume: int,
            end_step: int | None, ended: AttemptEnd | None = None) -> Attempt:
    return Attempt(number, number, f"u-{number}", worker_class, at(start), running_at=at(start + 1),
                   ended_at=None if end is None else at(end), end=ended, resume_step=resume, end_step=end_step)


def test_worker_time_steps_and_redone_steps_are_counted_per_class_and_tenant() -> None:
    failed_over = request("acme", [
        attempt(1, WorkerClass.SMALL, 0, 11, 0, 60, AttemptEnd.RESOURCE_EXHAUSTED),  # 10 s running, 60 steps
        attempt(2, WorkerClass.LARGE, 11, 32, 50, 100, AttemptEnd.COMPLETED),  # resumed at 50: 10 redone
    ], RequestStatus.COMPLETED, finished=32)
    running = request("globex", [attempt(1, WorkerClass.SMALL, 20, None, 0, None)], RequestStatus.RUNNING,
                      finished=None, step=30)
    found = usage_by_tenant([failed_over, running], since=T0, until=at(40))
    acme, globex = found["acme"], found["globex"]
    assert acme.worker_seconds == {"small": 10.0, "large": 20.0}
    assert (acme.steps_trained, acme.steps_redone, acme.attempts, acme.trainings) == (110, 10, 2, {"completed": 1})
    assert globex.worker_seconds == {"small": 19.0} and globex.steps_trained == 30 and globex.trainings == {}


def test_only_what_falls_in_the_window_counts() -> None:
    old = request("acme", [attempt(1, WorkerClass.SMALL, 0, 101, 0, 50, AttemptEnd.COMPLETED)],
                  RequestStatus.COMPLETED, finished=101)
    found = usage_by_tenant([old], since=at(51), until=at(200))
    assert found["acme"].worker_seconds == {"small": 50.0} and found["acme"].trainings == {"completed": 1}
    assert usage_by_tenant([old], since=at(500), until=at(600)) == {}


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800)])
def test_windows_are_read_with_their_unit(text: str, seconds: int) -> None:
    assert parse_window(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "-1h", "0h", "1.5h", "3w"])
def test_a_bad_window_is_refused_naming_it(text: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid window"):
        parse_window(text)
