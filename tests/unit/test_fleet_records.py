"""The provisioner's decisions in the metadata: one row a class, the last one wins, times come back in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tenantml.adapters.database import create_database
from tenantml.adapters.fleet_records import FleetRecord, FleetRecords
from tenantml.domain.provisioning import ScalingDecision

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def decision(worker_class: str, current: int, desired: int, at: datetime, reason: str = "r") -> ScalingDecision:
    return ScalingDecision(worker_class, at, current, desired, need=desired, busy=0, minimum=0, maximum=2, reason=reason)


def test_the_last_decision_of_each_class_is_kept(sqlite_url: str) -> None:
    records = FleetRecords(create_database(sqlite_url))
    assert records.fleet_records() == []
    records.record_fleet([FleetRecord(decision("small", 0, 2, T0), changed_at=T0),
                          FleetRecord(decision("large", 0, 0, T0))])
    later = T0 + timedelta(seconds=40)
    records.record_fleet([FleetRecord(decision("small", 2, 1, later, "down"), draining=1, restarts=3, changed_at=later)])
    large, small = records.fleet_records()
    assert (small.decision, small.draining, small.restarts, small.changed_at) == (
        decision("small", 2, 1, later, "down"), 1, 3, later)
    assert (large.decision.desired, large.changed_at) == (0, None)
