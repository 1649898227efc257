"""The provisioner's last decision per worker class in the metadata database, for ``tenantml workers``.

One row a class, overwritten by each tick of the provisioner's loop; the history of the decisions
that changed a count is Prefect's event feed (``tenantml.fleet.scaled``), not this table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select

from tenantml.adapters.database import fleet_decisions
from tenantml.adapters.sql import SqlDatabase
from tenantml.domain.provisioning import ScalingDecision

__all__ = ["FleetRecord", "FleetRecords"]


@dataclass(frozen=True)
class FleetRecord:
    """A class's last decision, with what the fleet said of its workers at that tick."""

    decision: ScalingDecision
    draining: int = 0  # workers chosen for removal, finishing their runs
    restarts: int = 0  # workers replaced after exiting by themselves, since the platform started
    changed_at: datetime | None = None  # when the provisioner last changed the count


class FleetRecords(SqlDatabase):
    """The fleet_decisions table."""

    def record_fleet(self, records: Sequence[FleetRecord]) -> None:
        """Replace the rows of these classes with these records, in one transaction."""
        if not records:
            return
        with self._begin() as conn:
            conn.execute(delete(fleet_decisions).where(
                fleet_decisions.c.worker_class.in_([r.decision.worker_class for r in records])
            ))
            conn.execute(insert(fleet_decisions), [_row(record) for record in records])

    def fleet_records(self) -> list[FleetRecord]:
        """Every class's last record, by class name."""
        with self._connect() as conn:
            rows = conn.execute(select(fleet_decisions).order_by(fleet_decisions.c.worker_class)).all()
        return [
            FleetRecord(
                ScalingDecision(
                    worker_class=row.worker_class, at=_utc(row.decided_at), current=row.current,
                    desired=row.desired, need=row.need, busy=row.busy, minimum=row.minimum, maximum=row.maximum,
                    reason=row.reason,
                ),
                draining=row.draining, restarts=row.restarts, changed_at=_utc(row.changed_at) if row.changed_at else None,
            )
            for row in rows
        ]


def _row(record: FleetRecord) -> dict[str, object]:
    decision = record.decision
    return {
        "worker_class": decision.worker_class, "current": decision.current, "desired": decision.desired,
        "minimum": decision.minimum, "maximum": decision.maximum, "busy": decision.busy, "need": decision.need,
        "draining": record.draining, "restarts": record.restarts, "reason": decision.reason,
        "decided_at": decision.at, "changed_at": record.changed_at,
    }


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
