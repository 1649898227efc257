"""UUID events and the failover decision (claims 4, 5 and 7 of the patent).

A UUID event ends the current attempt: its worker's UUID is cleared and the lease epoch moves on.
What follows is decided here, from the event and the request's attempt history alone:

- a user error (bad data, bad parameters) fails the request at once: retrying cannot help;
- a lost worker, a crash or a resource failure uses one unit of the attempt budget; over budget,
  the request fails with the whole story in its reason;
- a preemption or a move uses none: the work was handed back, not lost;
- the next attempt runs on the same worker class, except after a resource failure, which escalates
  to the larger class (claim 7).
"""

from __future__ import annotations

from dataclasses import dataclass

from tenantml.domain.request import AttemptEnd, TrainingRequest, WorkerClass

__all__ = ["Fail", "FailoverDecision", "Resume", "UuidEvent", "decide", "next_worker_class"]


@dataclass(frozen=True)
class UuidEvent:
    """Why the current attempt's worker UUID is cleared."""

    end: AttemptEnd
    reason: str


@dataclass(frozen=True)
class Resume:
    """Start the next attempt on ``worker_class``, from the last committed checkpoint."""

    worker_class: WorkerClass


@dataclass(frozen=True)
class Fail:
    """End the request as failed, for ``reason``."""

    reason: str


FailoverDecision = Resume | Fail


def next_worker_class(current: WorkerClass, end: AttemptEnd) -> WorkerClass:
    """The class of the next attempt: resource failures escalate, everything else stays."""
    if end is AttemptEnd.RESOURCE_EXHAUSTED:
        return WorkerClass.LARGE
    return current


def decide(request: TrainingRequest, event: UuidEvent, budget: int) -> FailoverDecision:
    """What follows ``event`` on ``request``'s current attempt, given an attempt ``budget``.

    The current attempt counts once, by this event, even if its worker already reported the same
    end into the record.
    """
    attempt = request.current_attempt
    if attempt is None:
        raise ValueError(f"request {request.id} has no attempt to fail over from")
    if event.end is AttemptEnd.USER_ERROR:
        return Fail(event.reason)
    used = request.failovers_before(attempt.number) + (1 if event.end.is_failover else 0)
    if event.end.is_failover and used > budget:
        return Fail(f"gave up after {len(request.attempts)} attempts ({used} failures); last: {event.reason}")
    return Resume(next_worker_class(attempt.worker_class, event.end))
