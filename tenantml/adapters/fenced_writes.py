"""The training workers' writes to the metadata store, each fenced by the lease.

Each write is one UPDATE guarded by the request id, the lease epoch and the worker UUID. A write
that matches no row raises :class:`~tenantml.errors.StaleEpoch`: the worker has been replaced and
must stop. A dropped database connection is tried again (retry_disconnects) where the write is
idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update

from tenantml.adapters.database import attempts, requests
from tenantml.adapters.sql import SqlDatabase, retry_disconnects
from tenantml.domain.request import WORKING, AttemptEnd, Checkpoint, Lease, RequestStatus
from tenantml.errors import StaleEpoch

__all__ = ["FencedWrites"]

_WORKING = sorted(status.value for status in WORKING)


class FencedWrites(SqlDatabase):
    @retry_disconnects
    def mark_running(self, lease: Lease, now: datetime) -> None:
        """The attempt's training code began (fenced like every worker write)."""
        self.check_current(lease)
        with self._begin() as conn:
            conn.execute(
                update(attempts)
                .where(attempts.c.request_id == lease.request_id, attempts.c.epoch == lease.epoch,
                       attempts.c.running_at.is_(None))
                .values(running_at=now)
            )

    @retry_disconnects
    def heartbeat(self, lease: Lease, step: int, total_steps: int, now: datetime) -> str | None:
        """Fenced; returns the scheduler's reason when it asked this attempt to hand back, else None."""
        with self._begin() as conn:
            row = conn.execute(
                update(requests).where(*self._lease(lease))
                .values(heartbeat_at=now, step=step, total_steps=total_steps, updated_at=now)
                .returning(requests.c.preempt_requested, requests.c.preempt_reason)
            ).first()
        if row is None:
            raise StaleEpoch(lease.request_id, lease.epoch)
        return (row.preempt_reason or "asked to hand back by the scheduler") if row.preempt_requested else None

    @retry_disconnects
    def commit_checkpoint(self, lease: Lease, checkpoint: Checkpoint, now: datetime) -> None:
        self._fenced(
            lease,
            checkpoint_uri=checkpoint.uri,
            checkpoint_step=checkpoint.step,
            checkpoint_sha256=checkpoint.sha256,
            heartbeat_at=now,
            updated_at=now,
        )

    @retry_disconnects
    def check_current(self, lease: Lease) -> None:
        """Raise StaleEpoch unless this worker still holds the lease (a read, writes nothing)."""
        with self._connect() as conn:
            row = conn.execute(select(requests.c.id).where(*self._lease(lease))).first()
        if row is None:
            raise StaleEpoch(lease.request_id, lease.epoch)

    def report_attempt_end(self, lease: Lease, end: AttemptEnd, reason: str, now: datetime) -> None:
        """A worker says why it stops (e.g. out of memory); the master acts on it."""
        with self._begin() as conn:
            # The lease check is a fenced write in the same transaction, so no failover can slip in between.
            fence = update(requests).where(*self._lease(lease)).values(updated_at=now)
            if conn.execute(fence).rowcount != 1:
                raise StaleEpoch(lease.request_id, lease.epoch)
            conn.execute(
                update(attempts)
                .where(attempts.c.request_id == lease.request_id, attempts.c.epoch == lease.epoch,
                       attempts.c.end.is_(None))
                .values(end=end.value, reason=reason)
            )

    def complete(self, lease: Lease, model_version: str, metrics: Mapping[str, float], now: datetime) -> None:
        with self._begin() as conn:
            result = conn.execute(
                update(requests)
                .where(*self._lease(lease))
                .values(
                    status=RequestStatus.COMPLETED.value,
                    step=func.coalesce(requests.c.total_steps, requests.c.step),  # the last beat may lag
                    model_version=model_version,
                    metrics=dict(metrics),
                    worker_uuid=None,
                    finished_at=now,
                    updated_at=now,
                )
            )
            if result.rowcount != 1:
                raise StaleEpoch(lease.request_id, lease.epoch)
            row = conn.execute(select(requests.c.step).where(requests.c.id == lease.request_id)).first()
            self._close_attempt(conn, lease.request_id, lease.epoch, now, AttemptEnd.COMPLETED, None,
                                row.step if row else None)

    # -- internals -----------------------------------------------------------------------
    @staticmethod
    def _lease(lease: Lease) -> list[Any]:
        return [
            requests.c.id == lease.request_id,
            requests.c.epoch == lease.epoch,
            requests.c.worker_uuid == lease.worker_uuid,
            requests.c.status.in_(_WORKING),
        ]

    def _fenced(self, lease: Lease, **values: Any) -> None:
        with self._begin() as conn:
            result = conn.execute(update(requests).where(*self._lease(lease)).values(**values))
        if result.rowcount != 1:
            raise StaleEpoch(lease.request_id, lease.epoch)

    @staticmethod
    def _close_attempt(
        conn: Any,
        request_id: str,
        epoch: int,
        now: datetime,
        end: AttemptEnd | None,
        reason: str | None,
        end_step: int | None,
    ) -> None:
        conn.execute(
            update(attempts)
            .where(attempts.c.request_id == request_id, attempts.c.epoch == epoch, attempts.c.ended_at.is_(None))
            .values(ended_at=now, end_step=end_step)
        )
        if end is not None:
            unset: Any = attempts.c.end.is_(None)
            if end is AttemptEnd.RESOURCE_EXHAUSTED:  # a memory kill its worker's crash hook reported as a crash
                unset = or_(unset, attempts.c.end == AttemptEnd.CRASHED.value)
            conn.execute(
                update(attempts)
                .where(attempts.c.request_id == request_id, attempts.c.epoch == epoch, unset)
                .values(end=end.value, reason=reason)
            )

