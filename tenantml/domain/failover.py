"""UUID events and the failover decision (claims 4, 5 and 7 of the patent).

A UUID event ends the current attempt: its worker's UUID is cleared and the lease epoch moves on.
What follows is decided here, from the event and the request's attempt history alone:

- a user error (bad data, bad parameters) fails the request at once: retrying cannot help;
- a lost worker, a crash or a resource failure uses one unit of the attempt budget, but only while
  the training makes no progress: an attempt that committed a new checkpoint starts the count
  afresh, so a long training on machines that fail now and then always finishes, while a poison
  request that dies before its first checkpoint fails after the budget; over budget, the request
  fails with the whole story in its reason;
- a preemption or a move uses none: the work was handed back, not lost;
- the next attempt runs on the same worker class, except after a resource failure, which escalates
  to the larger class (claim 7); a crash or a lost worker that its platform killed for memory is a
  resource failure too (:func:`memory_kill`, :mod:`tenantml.domain.memory_kills`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tenantml.domain import memory_kills
from tenantml.domain.request import AttemptEnd, TrainingRequest, WorkerClass

__all__ = ["Fail", "FailoverDecision", "Resume", "UuidEvent", "decide", "failures_without_progress", "memory_kill",
           "next_worker_class"]


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


def memory_kill(event: UuidEvent, witness: Callable[[], str | None] = lambda: None) -> UuidEvent:
    """``event`` as a resource failure if it is a crash or a lost worker that was killed for memory.

    The mark is in the crash message (ECS' ``OutOfMemoryError``, Kubernetes' ``OOMKilled``), or
    ``witness`` saw it (a kernel OOM kill in the attempt's cgroup); the witness is asked only then.
    """
    if event.end not in (AttemptEnd.CRASHED, AttemptEnd.HEARTBEAT_LOST):
        return event
    if marked := memory_kills.in_message(event.reason):
        return UuidEvent(AttemptEnd.RESOURCE_EXHAUSTED, marked)
    if witnessed := witness():
        return UuidEvent(AttemptEnd.RESOURCE_EXHAUSTED, f"{witnessed}; seen as: {event.reason}")
    return event


def failures_without_progress(request: TrainingRequest, event: UuidEvent) -> int:
    """Failures since (and including) the last attempt that committed a new checkpoint.

    The current attempt counts by ``event``, once, even if its worker already reported the same
    end into the record.
    """
    used = 0
    for attempt in reversed(request.attempts):
        end = event.end if attempt is request.current_attempt else attempt.end
        used += 1 if end is not None and end.is_failover else 0
        if request.progressed(attempt):
            break
    return used


def decide(request: TrainingRequest, event: UuidEvent, budget: int) -> FailoverDecision:
    """What follows ``event`` on ``request``'s current attempt, given an attempt ``budget``.

    See :func:`failures_without_progress` for what uses the budget.
    """
    attempt = request.current_attempt
    if attempt is None:
        raise ValueError(f"request {request.id} has no attempt to fail over from")
    if event.end is AttemptEnd.USER_ERROR:
        return Fail(event.reason)
    used = failures_without_progress(request, event)
    if event.end.is_failover and used > budget:
        return Fail(
            f"gave up after {len(request.attempts)} attempts ({used} failures without a new checkpoint); "
            f"last: {event.reason}"
        )
    return Resume(next_worker_class(attempt.worker_class, event.end))
