"""Training requests, their attempts and the rules that move them along.

A request is trained by a sequence of attempts. Each attempt holds a worker UUID and a lease
epoch; only the current epoch may write. A UUID event (heartbeat lost, crash, move, preemption,
resource failure) ends the attempt and bumps the epoch; the request waits in the scheduler's queue
(``WAITING``) until a slot of its class is free, and the next attempt resumes from the last
committed checkpoint. A new request waits there too (``PENDING``) for its first slot.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "ACTIVE",
    "QUEUED",
    "Attempt",
    "AttemptEnd",
    "Checkpoint",
    "Lease",
    "RequestStatus",
    "TrainingRequest",
    "TrainingSpec",
    "WORKING",
    "WorkerClass",
]


class RequestStatus(StrEnum):
    PENDING = "pending"  # admitted, waiting for its first worker slot
    WAITING = "waiting"  # an attempt ended; waiting for a slot to resume from its checkpoint
    RUNNING = "running"
    RESUMING = "resuming"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_active(self) -> bool:
        return not self.is_terminal

    @property
    def is_queued(self) -> bool:
        """Waiting in the scheduler's queue for a worker slot: no worker holds it."""
        return self in QUEUED

    @property
    def is_working(self) -> bool:
        """A worker holds the lease: only these statuses accept worker writes."""
        return self in WORKING

    @staticmethod
    def of_new_attempt(first: bool) -> RequestStatus:
        """The status a request takes when an attempt opens: the first runs, a later one resumes."""
        return RequestStatus.RUNNING if first else RequestStatus.RESUMING


TERMINAL = frozenset({RequestStatus.COMPLETED, RequestStatus.FAILED, RequestStatus.SKIPPED, RequestStatus.CANCELLED})
ACTIVE = frozenset(status for status in RequestStatus if status not in TERMINAL)
WORKING = frozenset({RequestStatus.RUNNING, RequestStatus.RESUMING})
QUEUED = frozenset({RequestStatus.PENDING, RequestStatus.WAITING})


class WorkerClass(StrEnum):
    SMALL = "small"
    LARGE = "large"


class AttemptEnd(StrEnum):
    """Why an attempt ended. Only the failover reasons use up the attempt budget."""

    COMPLETED = "completed"
    HEARTBEAT_LOST = "heartbeat_lost"
    CRASHED = "crashed"
    MOVED = "moved"
    PREEMPTED = "preempted"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    USER_ERROR = "user_error"
    CANCELLED = "cancelled"
    MASTER_RESTARTED = "master_restarted"

    @property
    def is_failover(self) -> bool:
        return self in {
            AttemptEnd.HEARTBEAT_LOST,
            AttemptEnd.CRASHED,
            AttemptEnd.RESOURCE_EXHAUSTED,
        }

    @property
    def resumes(self) -> bool:
        """Whether another attempt follows an attempt that ended this way."""
        return self not in {AttemptEnd.COMPLETED, AttemptEnd.USER_ERROR, AttemptEnd.CANCELLED}


@dataclass(frozen=True)
class TrainingSpec:
    """What a tenant asked for: everything that decides the trained model."""

    tenant: str
    model: str
    dataset: str
    target: str
    algorithm: str
    params: dict[str, object] = field(default_factory=dict)
    dataset_fingerprint: str = ""
    promotion: str = "always"

    @property
    def training_fingerprint(self) -> str:
        """Equal for two requests that would train the same model from the same data."""
        payload = json.dumps(
            [self.dataset_fingerprint, self.target, self.algorithm, sorted(self.params.items())],
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Lease:
    """What a worker holds: the request, its UUID and the epoch every write of it is fenced by."""

    request_id: str
    worker_uuid: str
    epoch: int


@dataclass(frozen=True)
class Checkpoint:
    uri: str
    step: int
    sha256: str


@dataclass
class Attempt:
    number: int
    epoch: int
    worker_uuid: str
    worker_class: WorkerClass
    started_at: datetime
    flow_run_id: str | None = None
    running_at: datetime | None = None  # the worker's training code began
    ended_at: datetime | None = None
    end: AttemptEnd | None = None
    reason: str | None = None
    resume_step: int = 0
    end_step: int | None = None


@dataclass
class TrainingRequest:
    id: str
    spec: TrainingSpec
    status: RequestStatus
    created_at: datetime
    updated_at: datetime
    idempotency_key: str | None = None
    force: bool = False
    reason: str | None = None
    epoch: int = 0
    worker_uuid: str | None = None
    worker_class: WorkerClass = WorkerClass.SMALL
    heartbeat_at: datetime | None = None
    step: int = 0
    total_steps: int | None = None
    checkpoint: Checkpoint | None = None
    mlflow_run_id: str | None = None
    move_requested: bool = False
    queued_at: datetime | None = None  # since when it waits for a slot (None while a worker holds it)
    preempt_requested: bool = False  # the scheduler asked the current attempt to checkpoint and hand back
    preempt_reason: str | None = None
    model_version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    finished_at: datetime | None = None
    finalized_at: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def tenant(self) -> str:
        return self.spec.tenant

    @property
    def model(self) -> str:
        return self.spec.model

    @property
    def current_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def steps_redone(self, attempt: Attempt) -> int:
        """Steps the previous attempt had trained past the checkpoint this attempt resumed from."""
        before = [a for a in self.attempts if a.number == attempt.number - 1]
        if not before or before[0].end_step is None:
            return 0
        return max(0, before[0].end_step - attempt.resume_step)

    @property
    def failovers(self) -> int:
        """Failures that used the attempt budget (preemptions and moves do not)."""
        return self.failovers_before(len(self.attempts) + 1)

    def failovers_before(self, number: int) -> int:
        """Failures that used the budget among the attempts before attempt ``number``."""
        return sum(1 for a in self.attempts if a.number < number and a.end is not None and a.end.is_failover)

    def progressed(self, attempt: Attempt) -> bool:
        """Whether ``attempt`` committed a checkpoint past the step it resumed from."""
        later = [a for a in self.attempts if a.number == attempt.number + 1]
        reached = later[0].resume_step if later else (self.checkpoint.step if self.checkpoint else 0)
        return reached > attempt.resume_step
