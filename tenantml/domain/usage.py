"""What each tenant used, for chargeback: worker time by class, steps trained and redone, outcomes.

Counted from the attempt history alone, over a window: an attempt's worker time runs from when
its training code began (or, if it never began, from when it was started: a worker was held for
it all the same) to when it ended (or ``until`` for one still running), clipped to the window.
Steps trained are the steps an attempt advanced past the checkpoint it resumed from; steps redone
are those a failed attempt had trained past its last checkpoint, which the next one trained again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from tenantml.domain.request import Attempt, TrainingRequest

__all__ = ["TenantUsage", "usage_by_tenant"]


@dataclass
class TenantUsage:
    tenant: str
    worker_seconds: dict[str, float] = field(default_factory=dict)  # by worker class
    steps_trained: int = 0
    steps_redone: int = 0
    attempts: int = 0
    trainings: dict[str, int] = field(default_factory=dict)  # ended in the window, by outcome

    def as_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "worker_seconds": {k: round(v, 3) for k, v in sorted(self.worker_seconds.items())},
            "steps_trained": self.steps_trained,
            "steps_redone": self.steps_redone,
            "attempts": self.attempts,
            "trainings": dict(sorted(self.trainings.items())),
        }


def _seconds(attempt: Attempt, since: datetime, until: datetime) -> float:
    start = max(attempt.running_at or attempt.started_at, since)
    end = min(attempt.ended_at or until, until)
    return max(0.0, (end - start).total_seconds())


def usage_by_tenant(
    requests: Iterable[TrainingRequest], since: datetime, until: datetime
) -> dict[str, TenantUsage]:
    """Each tenant's usage between ``since`` and ``until`` (requests outside it count nothing)."""
    found: dict[str, TenantUsage] = {}
    for request in requests:
        usage = found.setdefault(request.tenant, TenantUsage(request.tenant))
        for attempt in request.attempts:
            seconds = _seconds(attempt, since, until)
            if seconds <= 0 and not (since <= attempt.started_at < until):
                continue
            usage.attempts += 1
            worker_class = attempt.worker_class.value
            usage.worker_seconds[worker_class] = usage.worker_seconds.get(worker_class, 0.0) + seconds
            reached = attempt.end_step if attempt.end_step is not None else request.step  # still running: so far
            usage.steps_trained += max(0, reached - attempt.resume_step)
            usage.steps_redone += request.steps_redone(attempt)
        if request.finished_at is not None and since <= request.finished_at < until:
            usage.trainings[request.status.value] = usage.trainings.get(request.status.value, 0) + 1
    return {tenant: usage for tenant, usage in sorted(found.items())
            if usage.attempts or usage.trainings}
