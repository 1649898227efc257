"""Counts over the training metadata, per worker class and per tenant: what the provisioner and quotas read.

Since the scheduler's queue lives in the metadata (revision 0005), a request is in one of two
places while it is active: **queued** (``pending`` or ``waiting``: no attempt open, no worker UUID)
for a slot of ``training_requests.worker_class``, or **working** (``running`` or ``resuming``),
holding a slot of its current attempt's class (``attempts.epoch == training_requests.epoch``). A
worker run that is dispatched but not yet picked up already holds its slot, so it counts as running:
the provisioner must not count it again as a backlog, and must not scale its worker away.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, select

from tenantml.adapters.database import attempts, requests
from tenantml.adapters.sql import SqlDatabase
from tenantml.domain.provisioning import Workload
from tenantml.domain.request import QUEUED, WORKING, AttemptEnd

__all__ = ["WorkloadCounts"]

_QUEUED = sorted(status.value for status in QUEUED)
_WORKING = sorted(status.value for status in WORKING)


class WorkloadCounts(SqlDatabase):
    def workload(self, completed_since: datetime) -> dict[str, Workload]:
        """Per worker class: requests queued for it, trainings holding its slots, completions since then."""
        current = and_(attempts.c.request_id == requests.c.id, attempts.c.epoch == requests.c.epoch)
        counts: dict[str, dict[str, int]] = {}
        with self._connect() as conn:
            queued = conn.execute(
                select(requests.c.worker_class, func.count())
                .where(requests.c.status.in_(_QUEUED))
                .group_by(requests.c.worker_class)
            ).all()
            working = conn.execute(
                select(attempts.c.worker_class, func.count())
                .select_from(attempts.join(requests, current))
                .where(requests.c.status.in_(_WORKING))
                .group_by(attempts.c.worker_class)
            ).all()
            done = conn.execute(
                select(attempts.c.worker_class, func.count())
                .where(attempts.c.end == AttemptEnd.COMPLETED.value, attempts.c.ended_at >= completed_since)
                .group_by(attempts.c.worker_class)
            ).all()
        for kind, rows in (("pending", queued), ("running", working), ("completed", done)):
            for worker_class, count in rows:
                counts.setdefault(worker_class, {})[kind] = int(count)
        return {worker_class: Workload(**values) for worker_class, values in counts.items()}

    def count_waiting(self, tenant: str) -> int:
        """The tenant's requests in the scheduler's queue (pending or waiting): what its queued limit bounds.

        A request whose attempt is dispatched holds a slot, so it no longer counts, even before its
        training code starts.
        """
        query = select(func.count()).select_from(requests).where(
            requests.c.tenant == tenant, requests.c.status.in_(_QUEUED)
        )
        with self._connect() as conn:
            return int(conn.execute(query).scalar_one())
