"""The ports: what the services need from the outside world, as Protocols.

Services (``tenantml.services``) depend on these and on the domain only; the adapters
(``tenantml.adapters``) implement them on SQLAlchemy, MLflow, Prefect and the file system, and
``tenantml.bootstrap`` wires one to the other. Each port is cut to one role, so that a reader sees
at a glance what, say, a worker may do to the metadata (its fenced writes, nothing else), and a
test fake implements only what the service under test calls.

Adapters translate their libraries' errors into :mod:`tenantml.errors`: nothing from SQLAlchemy,
MLflow or Prefect crosses a port.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from tenantml.domain.dataset import StoredDataset
from tenantml.domain.provisioning import Workload
from tenantml.domain.request import (
    AttemptEnd,
    Checkpoint,
    Lease,
    RequestStatus,
    TrainingRequest,
    WorkerClass,
)
from tenantml.domain.tenant import Quota

__all__ = [
    "Capacity",
    "CheckpointStore",
    "DatasetStorage",
    "DatasetUpload",
    "Dispatcher",
    "MemoryKills",
    "MetadataStore",
    "ModelRegistry",
    "RequestFinisher",
    "RequestReader",
    "RequestStore",
    "RunState",
    "RunLog",
    "RunTracking",
    "SupervisorStore",
    "TenantDirectory",
    "WorkerFleet",
    "WorkerStore",
    "WorkloadReader",
]


# -- training metadata --------------------------------------------------------------------------
class TenantDirectory(Protocol):
    """Tenants and the digests of their API keys."""

    def add_tenant(self, name: str, api_key_sha256: str, now: datetime) -> None: ...
    def tenant_exists(self, name: str) -> bool: ...
    def tenant_for_key(self, api_key_sha256: str) -> str | None: ...
    def list_tenants(self) -> list[str]: ...
    def queue_limit(self, name: str) -> int | None:
        """The tenant's own limit on waiting requests (None: the default); UnknownTenant if there is none."""
        ...

    def set_queue_limit(self, name: str, limit: int | None) -> None: ...
    def running_limit(self, name: str) -> int | None:
        """The tenant's own limit on running trainings (None: the default); UnknownTenant if there is none."""
        ...

    def set_running_limit(self, name: str, limit: int | None) -> None: ...
    def running_limits(self) -> dict[str, int | None]:
        """Every tenant's own running limit (None: the default), read at once for a scheduling tick."""
        ...

    def quotas(self) -> dict[str, Quota]:
        """Every tenant's own limits, by name, read at once."""
        ...


class RequestReader(Protocol):
    def get_request(self, request_id: str, tenant: str | None = None) -> TrainingRequest:
        """NotFound unless the request exists (and is ``tenant``'s, when one is named)."""
        ...


class RequestFinisher(Protocol):
    def finish(
        self,
        request_id: str,
        expected_epoch: int,
        status: RequestStatus,
        now: datetime,
        reason: str | None = None,
        end: AttemptEnd | None = None,
    ) -> None:
        """Move a request to a terminal status, fencing off its worker (a master's verdict, a user
        error a worker found, an operator's cancel); StaleEpoch if ``expected_epoch`` moved on."""
        ...


class RequestStore(RequestReader, Protocol):
    """Admission and the read side: what submitters, operators and tenants ask of the metadata."""

    def add_request(self, request: TrainingRequest) -> None:
        """Raises AlreadyTraining if the tenant's model has an active request already."""
        ...

    def list_requests(self, tenant: str | None = None, limit: int = 100) -> list[TrainingRequest]: ...
    def active_request(self, tenant: str, model: str) -> TrainingRequest | None: ...
    def requests_touched_since(self, since: datetime, tenant: str | None = None) -> list[TrainingRequest]:
        """Every request active now or updated since ``since`` (all tenants', or ``tenant``'s)."""
        ...

    def count_waiting(self, tenant: str) -> int:
        """The tenant's requests in the scheduler's queue (pending or waiting), for its queued limit."""
        ...

    def last_completed(self, tenant: str, model: str) -> TrainingRequest | None: ...
    def by_idempotency_key(self, tenant: str, key: str) -> TrainingRequest | None:
        """The tenant's request submitted with ``key``; keys are the tenant's own."""
        ...

    def request_move(self, request_id: str, now: datetime) -> None: ...
    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        """Who holds the named supervisor lease and when it last beat; None if nobody ever did."""
        ...


class SupervisorStore(RequestReader, RequestFinisher, Protocol):
    """What the training supervisor writes: its lease, the queue (compare-and-set on the epoch), the end."""

    def supervised(self) -> list[TrainingRequest]:
        """Every active request, and every ended one not finalized yet, with its attempts: one read."""
        ...

    def hold_lease(self, name: str, holder: str, now: datetime, stale_after_s: float) -> bool:
        """Take or keep the named supervisor lease; False while another holder's heartbeat is fresh."""
        ...

    def release_lease(self, name: str, holder: str) -> None: ...
    def start_attempt(
        self, request_id: str, expected_epoch: int, worker_uuid: str, worker_class: WorkerClass, now: datetime
    ) -> int:
        """Open the next attempt of a queued request; returns the new epoch (StaleEpoch if it moved)."""
        ...

    def set_attempt_flow_run(self, request_id: str, epoch: int, flow_run_id: str) -> None: ...
    def requeue(
        self, request_id: str, expected_epoch: int, worker_class: WorkerClass, now: datetime, end: AttemptEnd,
        reason: str,
    ) -> None:
        """End the working attempt and queue the request again for ``worker_class`` (StaleEpoch if it moved)."""
        ...

    def request_preemption(self, request_id: str, expected_epoch: int, reason: str, now: datetime) -> bool: ...
    def mark_finalized(self, request_id: str, now: datetime) -> None: ...
    def running_limits(self) -> dict[str, int | None]:
        """Every tenant's own limit on running trainings (None: the platform's default)."""
        ...


class WorkerStore(RequestReader, RequestFinisher, Protocol):
    """A worker's writes, each fenced by its lease: a replaced worker's write raises StaleEpoch."""

    def set_mlflow_run(self, request_id: str, run_id: str, now: datetime) -> None: ...
    def mark_running(self, lease: Lease, now: datetime) -> None: ...
    def heartbeat(self, lease: Lease, step: int, total_steps: int, now: datetime) -> str | None:
        """Fenced; the scheduler's reason when it asked this attempt to hand back, else None."""
        ...

    def commit_checkpoint(self, lease: Lease, checkpoint: Checkpoint, now: datetime) -> None: ...
    def check_current(self, lease: Lease) -> None: ...
    def report_attempt_end(self, lease: Lease, end: AttemptEnd, reason: str, now: datetime) -> None: ...
    def complete(self, lease: Lease, model_version: str, metrics: Mapping[str, float], now: datetime) -> None: ...


class MetadataStore(TenantDirectory, RequestStore, SupervisorStore, WorkerStore, Protocol):
    """The whole training metadata store (the SQLAlchemy ``Store`` implements it)."""


# -- orchestration -----------------------------------------------------------------------------
class RunState(StrEnum):
    """A worker run's state as the master needs it, whatever the orchestrator calls it."""

    WAITING = "waiting"  # scheduled or pending: no worker has it yet
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"  # failed, crashed or cancelled: the process is gone
    UNKNOWN = "unknown"


class Dispatcher(Protocol):
    """Starts an attempt's worker run on its class, reads the runs' states, cancels a replaced one."""

    def dispatch(self, lease: Lease, worker_class: WorkerClass, name: str | None = None,
                 tags: Sequence[str] = ()) -> str:
        """Start the worker run of ``lease``; ``name`` and ``tags`` are for people reading the orchestrator."""
        ...

    def run_states(self, flow_run_ids: Sequence[str]) -> Mapping[str, tuple[RunState, str]]:
        """The state of each run, in one call; a run the orchestrator cannot tell about is left out
        (the supervisor judges it by heartbeats alone)."""
        ...

    def cancel(self, flow_run_id: str) -> None: ...


class MemoryKills(Protocol):
    """Whether the platform killed a run's process for memory (see tenantml.domain.memory_kills)."""

    def memory_kill(self, flow_run_id: str) -> str | None:
        """The reason to record if it did, else None."""
        ...


# -- MLflow ------------------------------------------------------------------------------------
class RunTracking(Protocol):
    """The request's tracking run: a mirror of the metadata for people, never the source of truth."""

    def start_run(self, request: TrainingRequest) -> str: ...
    def mirror(self, run_id: str, **values: object) -> None: ...
    def record(
        self, run_id: str, tags: Mapping[str, object] | None = None,
        metrics: Mapping[str, float] | None = None, step: int = 0,
    ) -> None: ...
    def end_run(self, run_id: str, status: str) -> None: ...
    def run_is_terminated(self, run_id: str) -> bool: ...
    def prune_checkpoints(self, run_id: str, keep: Checkpoint | None, retention: int) -> int: ...


class CheckpointStore(Protocol):
    """Checkpoint bytes, under a path unique to the lease epoch; the pointer lives in the metadata."""

    def upload_checkpoint(self, run_id: str, blob: bytes, epoch: int, step: int) -> Checkpoint: ...
    def download_checkpoint(self, checkpoint: Checkpoint) -> bytes: ...


class ModelRegistry(Protocol):
    """Model storage: a registered model per tenant and model, the ``champion`` alias in service."""

    def log_model(self, run_id: str, estimator: Any, sample: Any, epoch: int, name: str | None = None) -> str: ...
    def register(
        self, tenant: str, model: str, model_uri: str, run_id: str, tags: Mapping[str, object]
    ) -> str: ...
    def versions_for_request(self, tenant: str, model: str, request_id: str) -> list[str]: ...
    def delete_version(self, tenant: str, model: str, version: str) -> None: ...
    def version_metrics(self, tenant: str, model: str, version: str) -> dict[str, float]: ...
    def list_versions(self, tenant: str, model: str) -> list[str]: ...
    def champion(self, tenant: str, model: str) -> str | None: ...
    def set_champion(self, tenant: str, model: str, version: str) -> None: ...
    def champion_history(self, tenant: str, model: str) -> list[str]: ...
    def rollback_champion(self, tenant: str, model: str) -> tuple[str | None, str]: ...
    def list_models(self, tenant: str) -> list[tuple[str, str | None, str | None]]: ...


# -- tenant storage ----------------------------------------------------------------------------
class DatasetStorage(Protocol):
    """Each tenant's datasets under its own prefix; a tenant reads only its own."""

    def prefix(self, tenant: str) -> Path: ...
    def resolve(self, tenant: str, dataset: str) -> Path: ...
    def add(self, tenant: str, source: Path, name: str | None = None) -> Path: ...
    def datasets(self, tenant: str) -> list[StoredDataset]: ...
    def delete(self, tenant: str, dataset: str) -> Path: ...
    def open_upload(self, tenant: str, name: str, limit: int) -> DatasetUpload: ...


class DatasetUpload(Protocol):
    """A dataset arriving in pieces (see TenantStorage.open_upload): write, then commit or discard."""

    size: int
    destination: Path
    partial: Path

    def write(self, chunk: bytes) -> None: ...
    def close(self) -> None: ...
    def commit(self) -> Path: ...
    def discard(self) -> None: ...


# -- the provisioner ---------------------------------------------------------------------------
class WorkloadReader(Protocol):
    """What the provisioner reads of the training metadata, per worker class."""

    def workload(self, completed_since: datetime) -> Mapping[str, Workload]:
        """Per class: requests waiting for a worker, trainings running, and those completed since
        ``completed_since``; a class with none of them may be left out."""
        ...


class WorkerFleet(Protocol):
    """The training workers per class, wherever they run: local processes, or an ECS service per class.

    ``counts`` are the numbers asked for (ECS's desired count), not the ones up yet, so that a
    worker still starting is not asked for twice. ``scale`` sets the desired number. A backend that
    removes workers must drain them (stop taking runs, exit when they are done) and never kill a
    running training: the local backend does (:mod:`tenantml.local.drain`); ECS does not yet. Backends raise
    ServiceUnavailable when their platform does not answer, InvalidRequest for an unknown class.
    """

    def counts(self) -> dict[str, int]: ...
    def scale(self, worker_class: str, desired: int) -> None: ...


class RunLog(Protocol):
    """Where the supervisor writes its decisions for people: the log of the attempt's run.

    Best effort: a slow or absent orchestrator loses lines, never delays a decision.
    """

    def note(self, flow_run_id: str | None, message: str, warning: bool = False) -> None: ...


class Capacity(Protocol):
    """The worker slots per class the scheduler may fill: workers taking runs times runs per worker.

    A worker being drained (chosen for removal, finishing its runs) is not counted: the scheduler
    dispatches no new run for it. The local fleet and a fixed count from the settings implement it.
    """

    def slots(self) -> Mapping[str, int]: ...
