"""Rows of the metadata tables as domain objects (SQLite hands datetimes back without a zone)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, overload

from tenantml.domain.request import (
    Attempt,
    AttemptEnd,
    Checkpoint,
    RequestStatus,
    TrainingRequest,
    TrainingSpec,
    WorkerClass,
)

__all__ = ["stored_key", "to_attempt", "to_request"]


def stored_key(tenant: str, key: str | None) -> str | None:
    """An idempotency key as stored: under its tenant, so tenants' keys never meet (or reveal each other)."""
    return None if key is None else f"{tenant}:{key}"


def _tenant_key(tenant: str, stored: str | None) -> str | None:
    return None if stored is None else stored.removeprefix(f"{tenant}:")


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: None) -> None: ...
def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def to_attempt(row: Any) -> Attempt:
    return Attempt(
        number=row.number,
        epoch=row.epoch,
        worker_uuid=row.worker_uuid,
        worker_class=WorkerClass(row.worker_class),
        started_at=_utc(row.started_at),
        flow_run_id=row.flow_run_id,
        running_at=_utc(row.running_at),
        ended_at=_utc(row.ended_at),
        end=AttemptEnd(row.end) if row.end else None,
        reason=row.reason,
        resume_step=row.resume_step,
        end_step=row.end_step,
    )


def to_request(row: Any, request_attempts: Iterable[Attempt]) -> TrainingRequest:
    checkpoint = (
        Checkpoint(uri=row.checkpoint_uri, step=row.checkpoint_step, sha256=row.checkpoint_sha256)
        if row.checkpoint_uri
        else None
    )
    return TrainingRequest(
        id=row.id,
        spec=TrainingSpec(
            tenant=row.tenant,
            model=row.model,
            dataset=row.dataset,
            target=row.target,
            algorithm=row.algorithm,
            params=dict(row.params or {}),
            dataset_fingerprint=row.dataset_fingerprint,
            promotion=row.promotion,
        ),
        status=RequestStatus(row.status),
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        idempotency_key=_tenant_key(row.tenant, row.idempotency_key),
        force=row.force,
        reason=row.reason,
        epoch=row.epoch,
        worker_uuid=row.worker_uuid,
        worker_class=WorkerClass(row.worker_class),
        heartbeat_at=_utc(row.heartbeat_at),
        step=row.step,
        total_steps=row.total_steps,
        checkpoint=checkpoint,
        mlflow_run_id=row.mlflow_run_id,
        move_requested=row.move_requested,
        queued_at=_utc(row.queued_at),
        preempt_requested=row.preempt_requested,
        preempt_reason=row.preempt_reason,
        model_version=row.model_version,
        metrics=dict(row.metrics or {}),
        finished_at=_utc(row.finished_at),
        finalized_at=_utc(row.finalized_at),
        attempts=list(request_attempts),
    )
