"""The training metadata store: requests and attempts (workers' fenced writes: fenced_writes.py; tenants:
tenant_records.py).

Worker writes (heartbeat, checkpoint, attempt end, completion) are single UPDATEs guarded by the
request id, the lease epoch and the worker UUID. A write that matches no row raises
:class:`~tenantml.errors.StaleEpoch`: the worker has been replaced and must stop. Failover is the
same kind of compare-and-set on the epoch, so two masters can never both start a next attempt.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tenantml.adapters.database import attempts, requests
from tenantml.adapters.rows import stored_key, to_attempt, to_request
from tenantml.adapters.sql import retry_disconnects
from tenantml.adapters.fenced_writes import FencedWrites
from tenantml.adapters.fleet_records import FleetRecords
from tenantml.adapters.supervisor_leases import SupervisorLeases
from tenantml.adapters.tenant_records import TenantRecords
from tenantml.adapters.workload import WorkloadCounts
from tenantml.domain.request import (
    ACTIVE,
    QUEUED,
    WORKING,
    Attempt,
    AttemptEnd,
    RequestStatus,
    TrainingRequest,
    WorkerClass,
)
from tenantml.errors import AlreadyTraining, InvalidRequest, NotFound, StaleEpoch

__all__ = ["Store"]

_ACTIVE = sorted(status.value for status in ACTIVE)
_WORKING = sorted(status.value for status in WORKING)
_QUEUED = sorted(status.value for status in QUEUED)


class Store(FencedWrites, TenantRecords, WorkloadCounts, FleetRecords, SupervisorLeases):
    """Reads and writes training metadata; every method is one transaction."""

    # -- requests ------------------------------------------------------------------------
    def add_request(self, request: TrainingRequest) -> None:
        """Raises AlreadyTraining when the tenant's model has an active request (the unique index says so)."""
        try:
            self._insert_request(request)
        except IntegrityError as err:
            if request.status.is_active and self.active_request(request.tenant, request.model) is not None:
                raise AlreadyTraining(request.tenant, request.model) from err
            if request.idempotency_key and self.by_idempotency_key(request.tenant, request.idempotency_key):
                raise InvalidRequest(
                    f"idempotency key {request.idempotency_key!r} is already in use: choose another one"
                ) from err
            raise

    def _insert_request(self, request: TrainingRequest) -> None:
        spec = request.spec
        with self._begin() as conn:
            conn.execute(
                insert(requests).values(
                    id=request.id,
                    tenant=spec.tenant,
                    model=spec.model,
                    dataset=spec.dataset,
                    dataset_fingerprint=spec.dataset_fingerprint,
                    training_fingerprint=spec.training_fingerprint,
                    target=spec.target,
                    algorithm=spec.algorithm,
                    params=dict(spec.params),
                    promotion=spec.promotion,
                    force=request.force,
                    idempotency_key=stored_key(spec.tenant, request.idempotency_key),
                    status=request.status.value,
                    reason=request.reason,
                    epoch=request.epoch,
                    worker_class=request.worker_class.value,
                    queued_at=request.queued_at or (request.created_at if request.status.is_queued else None),
                    step=0,
                    mlflow_run_id=request.mlflow_run_id,
                    model_version=request.model_version,
                    metrics={},
                    created_at=request.created_at,
                    updated_at=request.updated_at,
                    finished_at=request.finished_at,
                    finalized_at=request.finalized_at,
                )
            )

    @retry_disconnects
    def get_request(self, request_id: str, tenant: str | None = None) -> TrainingRequest:
        found = self._read(requests.c.id == request_id, tenant=tenant)
        if not found:
            raise NotFound(f"no training request {request_id!r}" + (f" for tenant {tenant!r}" if tenant else ""))
        return found[0]

    def list_requests(self, tenant: str | None = None, limit: int = 100) -> list[TrainingRequest]:
        return self._read(None, tenant=tenant, limit=limit)

    def active_request(self, tenant: str, model: str) -> TrainingRequest | None:
        found = self._read(and_(requests.c.model == model, requests.c.status.in_(_ACTIVE)), tenant=tenant, limit=1)
        return found[0] if found else None

    def requests_touched_since(self, since: datetime, tenant: str | None = None) -> list[TrainingRequest]:
        condition = or_(requests.c.updated_at >= since, requests.c.status.in_(_ACTIVE))
        return self._read(condition, tenant=tenant, limit=1_000_000)

    def last_completed(self, tenant: str, model: str) -> TrainingRequest | None:
        found = self._read(
            and_(requests.c.model == model, requests.c.status == RequestStatus.COMPLETED.value), tenant=tenant, limit=1
        )
        return found[0] if found else None

    def by_idempotency_key(self, tenant: str, key: str) -> TrainingRequest | None:
        found = self._read(requests.c.idempotency_key == stored_key(tenant, key), limit=1)
        return found[0] if found else None

    def mark_finalized(self, request_id: str, now: datetime) -> None:
        self._update(requests.c.id == request_id, finalized_at=now)

    def set_mlflow_run(self, request_id: str, run_id: str, now: datetime) -> None:
        """Record the request's MLflow run, once: the first writer wins."""
        self._update(and_(requests.c.id == request_id, requests.c.mlflow_run_id.is_(None)), mlflow_run_id=run_id,
                     updated_at=now)

    def request_move(self, request_id: str, now: datetime) -> None:
        if not self._update(
            and_(requests.c.id == request_id, requests.c.status.in_(_WORKING)), move_requested=True, updated_at=now
        ):
            raise InvalidRequest(f"request {request_id!r} is not training: only a running training can be moved")

    # -- supervisor ----------------------------------------------------------------------
    def supervised(self) -> list[TrainingRequest]:
        """Every request the supervisor looks after: still training or queued, or ended but not finalized."""
        return self._read(or_(requests.c.status.in_(_ACTIVE), requests.c.finalized_at.is_(None)), limit=1_000_000)

    def requeue(
        self,
        request_id: str,
        expected_epoch: int,
        worker_class: WorkerClass,
        now: datetime,
        end: AttemptEnd,
        reason: str,
    ) -> None:
        """End the current attempt and put the request back in the queue for ``worker_class``.

        Compare-and-set on the epoch of a working request. The worker is fenced off at once: its
        UUID is cleared and the status is no longer a working one, so its next write is refused.
        """
        with self._begin() as conn:
            result = conn.execute(
                update(requests)
                .where(requests.c.id == request_id, requests.c.epoch == expected_epoch,
                       requests.c.status.in_(_WORKING))
                .values(
                    status=RequestStatus.WAITING.value,
                    worker_uuid=None,
                    worker_class=worker_class.value,
                    queued_at=now,
                    heartbeat_at=None,
                    move_requested=False,
                    preempt_requested=False,
                    preempt_reason=None,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                raise StaleEpoch(request_id, expected_epoch)
            row = conn.execute(select(requests.c.step).where(requests.c.id == request_id)).one()
            self._close_attempt(conn, request_id, expected_epoch, now, end, reason, row.step)

    def request_preemption(self, request_id: str, expected_epoch: int, reason: str, now: datetime) -> bool:
        """Ask the current attempt to checkpoint and hand back; its worker reads it with its next heartbeat."""
        return self._update(
            and_(requests.c.id == request_id, requests.c.epoch == expected_epoch, requests.c.status.in_(_WORKING),
                 requests.c.preempt_requested.is_(False)),
            preempt_requested=True, preempt_reason=reason, updated_at=now,
        )

    def start_attempt(
        self,
        request_id: str,
        expected_epoch: int,
        worker_uuid: str,
        worker_class: WorkerClass,
        now: datetime,
    ) -> int:
        """Open the next attempt of a queued request: bump the epoch and hand the lease to ``worker_uuid``.

        Compare-and-set on ``expected_epoch`` and a queued status: raises StaleEpoch if somebody
        else moved it first (a cancel, another supervisor). Returns the new epoch.
        """
        epoch = expected_epoch + 1
        with self._begin() as conn:
            result = conn.execute(
                update(requests)
                .where(requests.c.id == request_id, requests.c.epoch == expected_epoch, requests.c.status.in_(_QUEUED))
                .values(
                    epoch=epoch,
                    worker_uuid=worker_uuid,
                    worker_class=worker_class.value,
                    status=RequestStatus.of_new_attempt(first=expected_epoch == 0).value,
                    heartbeat_at=None,
                    queued_at=None,
                    move_requested=False,
                    preempt_requested=False,
                    preempt_reason=None,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                if conn.execute(select(requests.c.id).where(requests.c.id == request_id)).first() is None:
                    raise NotFound(f"no training request {request_id!r}")
                raise StaleEpoch(request_id, expected_epoch)
            row = conn.execute(select(requests.c.checkpoint_step).where(requests.c.id == request_id)).one()
            number = conn.execute(select(attempts.c.number).where(attempts.c.request_id == request_id)).all()
            conn.execute(
                insert(attempts).values(
                    request_id=request_id,
                    number=len(number) + 1,
                    epoch=epoch,
                    worker_uuid=worker_uuid,
                    worker_class=worker_class.value,
                    started_at=now,
                    resume_step=row.checkpoint_step or 0,
                )
            )
        return epoch

    def set_attempt_flow_run(self, request_id: str, epoch: int, flow_run_id: str) -> None:
        with self._begin() as conn:
            conn.execute(
                update(attempts)
                .where(attempts.c.request_id == request_id, attempts.c.epoch == epoch)
                .values(flow_run_id=flow_run_id)
            )

    def finish(
        self,
        request_id: str,
        expected_epoch: int,
        status: RequestStatus,
        now: datetime,
        reason: str | None = None,
        end: AttemptEnd | None = None,
    ) -> None:
        """Move a request to a terminal status, fencing off whichever worker holds it."""
        with self._begin() as conn:
            row = conn.execute(select(requests.c.step).where(requests.c.id == request_id)).first()
            result = conn.execute(
                update(requests)
                .where(requests.c.id == request_id, requests.c.epoch == expected_epoch, requests.c.status.in_(_ACTIVE))
                .values(
                    status=status.value,
                    reason=reason,
                    epoch=expected_epoch + 1,
                    worker_uuid=None,
                    queued_at=None,
                    finished_at=now,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                raise StaleEpoch(request_id, expected_epoch)
            self._close_attempt(conn, request_id, expected_epoch, now, end, reason, row.step if row else None)

    # -- internals -----------------------------------------------------------------------
    def _update(self, condition: Any, **values: Any) -> bool:
        with self._begin() as conn:
            return conn.execute(update(requests).where(condition).values(**values)).rowcount == 1

    def _read(self, condition: Any, tenant: str | None = None, limit: int = 100) -> list[TrainingRequest]:
        query = select(requests).order_by(requests.c.created_at.desc()).limit(limit)
        if condition is not None:
            query = query.where(condition)
        if tenant is not None:
            query = query.where(requests.c.tenant == tenant)
        with self._connect() as conn:
            rows = conn.execute(query).all()
            ids = [row.id for row in rows]
            attempt_rows = (
                conn.execute(
                    select(attempts).where(attempts.c.request_id.in_(ids)).order_by(attempts.c.number)
                ).all()
                if ids
                else []
            )
        by_request: dict[str, list[Attempt]] = {}
        for attempt_row in attempt_rows:
            by_request.setdefault(attempt_row.request_id, []).append(to_attempt(attempt_row))
        return [to_request(row, by_request.get(row.id, [])) for row in rows]
