"""Counts over the training metadata, per worker class and per tenant: what the provisioner and quotas read."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, select

from tenantml.adapters.database import attempts, requests
from tenantml.adapters.sql import SqlDatabase
from tenantml.domain.provisioning import Workload
from tenantml.domain.request import ACTIVE, AttemptEnd, WorkerClass

__all__ = ["WorkloadCounts"]

_ACTIVE = sorted(status.value for status in ACTIVE)


class WorkloadCounts(SqlDatabase):
    def workload(self, completed_since: datetime) -> dict[str, Workload]:
        """Per worker class: requests waiting for a worker, trainings running, completions since then.

        A request with no attempt yet waits for the small class (every first attempt runs there).
        """
        current = and_(attempts.c.request_id == requests.c.id, attempts.c.epoch == requests.c.epoch)
        active = requests.c.status.in_(_ACTIVE)
        counts: dict[str, dict[str, int]] = {}
        with self._connect() as conn:
            unstarted = conn.execute(
                select(func.count()).select_from(requests).where(active, ~select(attempts.c.number).where(current).exists())
            ).scalar_one()
            counts.setdefault(WorkerClass.SMALL.value, {})["pending"] = int(unstarted)
            live = conn.execute(
                select(attempts.c.worker_class, attempts.c.running_at.is_not(None), func.count())
                .select_from(attempts.join(requests, current))
                .where(active, attempts.c.ended_at.is_(None))
                .group_by(attempts.c.worker_class, attempts.c.running_at.is_not(None))
            ).all()
            done = conn.execute(
                select(attempts.c.worker_class, func.count())
                .where(attempts.c.end == AttemptEnd.COMPLETED.value, attempts.c.ended_at >= completed_since)
                .group_by(attempts.c.worker_class)
            ).all()
        for worker_class, is_running, count in live:
            kind = "running" if is_running else "pending"
            by_class = counts.setdefault(worker_class, {})
            by_class[kind] = by_class.get(kind, 0) + int(count)
        for worker_class, count in done:
            counts.setdefault(worker_class, {})["completed"] = int(count)
        return {worker_class: Workload(**values) for worker_class, values in counts.items()}

    def count_waiting(self, tenant: str) -> int:
        """The tenant's active requests whose training code has not started: pending, or an attempt not yet running."""
        running = (
            select(attempts.c.request_id)
            .where(attempts.c.request_id == requests.c.id, attempts.c.epoch == requests.c.epoch,
                   attempts.c.running_at.is_not(None))
            .exists()
        )
        query = select(func.count()).select_from(requests).where(
            requests.c.tenant == tenant, requests.c.status.in_(_ACTIVE), ~running
        )
        with self._connect() as conn:
            return int(conn.execute(query).scalar_one())
