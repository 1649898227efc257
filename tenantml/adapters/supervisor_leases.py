"""Who runs the training supervisor now: one lease row per loop name, a compare-and-set on its heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tenantml.adapters.database import supervisor_leases
from tenantml.adapters.sql import SqlDatabase

__all__ = ["SupervisorLeases"]


class SupervisorLeases(SqlDatabase):
    def hold_lease(self, name: str, holder: str, now: datetime, stale_after_s: float) -> bool:
        """Take or keep the supervisor lease ``name``; False while another holder's heartbeat is fresh.

        One compare-and-set: the row is ours, or its heartbeat is older than ``stale_after_s``.
        """
        cutoff = now - timedelta(seconds=stale_after_s)
        with self._begin() as conn:
            taken = conn.execute(
                update(supervisor_leases)
                .where(supervisor_leases.c.name == name,
                       or_(supervisor_leases.c.holder == holder, supervisor_leases.c.heartbeat_at < cutoff))
                .values(holder=holder, heartbeat_at=now)
            ).rowcount == 1
            if taken:
                return True
            if conn.execute(select(supervisor_leases.c.name).where(supervisor_leases.c.name == name)).first():
                return False
        try:
            with self._begin() as conn:
                conn.execute(insert(supervisor_leases).values(name=name, holder=holder, acquired_at=now,
                                                              heartbeat_at=now))
        except IntegrityError:  # another supervisor created it first
            return False
        return True

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up at once (a clean stop), so that a standby need not wait for it to go stale."""
        with self._begin() as conn:
            conn.execute(supervisor_leases.delete().where(supervisor_leases.c.name == name,
                                                          supervisor_leases.c.holder == holder))

    def lease_holder(self, name: str) -> tuple[str, datetime] | None:
        with self._connect() as conn:
            row = conn.execute(select(supervisor_leases.c.holder, supervisor_leases.c.heartbeat_at)
                               .where(supervisor_leases.c.name == name)).first()
        if row is None:
            return None
        at = row.heartbeat_at if row.heartbeat_at.tzinfo else row.heartbeat_at.replace(tzinfo=UTC)
        return str(row.holder), at
