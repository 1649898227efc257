"""The provisioner's tick on an in-memory fleet: it scales what should change, remembers its cooldowns,
and a backend that fails on one class neither stops the others nor loses the decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from tenantml.domain.provisioning import FleetPolicy, Workload
from tenantml.errors import InvalidRequest, ServiceUnavailable
from tenantml.services.provisioner import Provisioner, summary

T0 = datetime(2025, 1, 1, tzinfo=UTC)
POLICIES = {"small": FleetPolicy(minimum=0, maximum=3, cooldown_s=60), "large": FleetPolicy(minimum=0, maximum=1)}


@dataclass
class MemoryFleet:
    """A fake of the WorkerFleet port: counts in a dict, every scale call recorded."""

    workers: dict[str, int]
    calls: list[tuple[str, int]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        return dict(self.workers)

    def scale(self, worker_class: str, desired: int) -> None:
        self.calls.append((worker_class, desired))
        if worker_class in self.down:
            raise ServiceUnavailable(f"the {worker_class} service did not answer")
        self.workers[worker_class] = desired


@dataclass
class Queue:
    """A fake of the WorkloadReader port; records the windows it was asked for."""

    by_class: dict[str, Workload] = field(default_factory=dict)
    asked: list[datetime] = field(default_factory=list)

    def workload(self, completed_since: datetime) -> Mapping[str, Workload]:
        self.asked.append(completed_since)
        return dict(self.by_class)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_tick_scales_each_class_to_its_need_and_leaves_other_pools_alone() -> None:
    fleet = MemoryFleet({"master": 1, "small": 0, "large": 0})
    queue = Queue({"small": Workload(pending=2, running=0), "large": Workload(pending=4)})
    large, small = Provisioner(fleet, queue, POLICIES).tick(T0)
    assert (small.desired, large.desired) == (2, 1)
    assert large.reason == "4 pending + 0 running need 4 workers; capped at max 1: up to 1"
    assert fleet.calls == [("large", 1), ("small", 2)]
    assert fleet.workers == {"master": 1, "small": 2, "large": 1}


def test_scale_is_called_only_when_the_count_should_change() -> None:
    fleet = MemoryFleet({"small": 2, "large": 0})
    provisioner = Provisioner(fleet, Queue({"small": Workload(running=2)}), POLICIES)
    for tick in range(5):
        provisioner.tick(at(tick * 30))
    assert fleet.calls == []


def test_the_cooldown_is_remembered_across_ticks() -> None:
    fleet = MemoryFleet({"small": 0, "large": 0})
    queue = Queue({"small": Workload(pending=3)})
    provisioner = Provisioner(fleet, queue, POLICIES)
    provisioner.tick(T0)
    queue.by_class = {}
    counts = []
    for seconds in range(10, 100, 10):
        provisioner.tick(at(seconds))
        counts.append(fleet.workers["small"])
    assert counts == [3, 3, 3, 3, 3, 3, 0, 0, 0]  # the surplus began at 10 s; 60 s later it goes
    assert fleet.calls == [("small", 3), ("small", 0)]


def test_a_worker_that_died_is_replaced_at_once() -> None:
    fleet = MemoryFleet({"small": 2, "large": 0})
    provisioner = Provisioner(fleet, Queue({"small": Workload(running=1, pending=1)}), POLICIES)
    provisioner.tick(T0)
    fleet.workers["small"] = 1  # gone without the provisioner
    [_, small] = provisioner.tick(at(5))
    assert (small.current, small.desired, fleet.workers["small"]) == (1, 2, 2)


def test_a_failing_backend_does_not_stop_the_other_classes_and_is_retried() -> None:
    fleet = MemoryFleet({"small": 0, "large": 0}, down={"large"})
    provisioner = Provisioner(fleet, Queue({"small": Workload(pending=1), "large": Workload(pending=1)}), POLICIES)
    large, small = provisioner.tick(T0)
    assert large.reason.endswith("up to 1; not applied: the large service did not answer")
    assert fleet.workers == {"small": 1, "large": 0}
    fleet.down.clear()
    provisioner.tick(at(10))
    assert fleet.workers == {"small": 1, "large": 1}
    assert fleet.calls == [("large", 1), ("small", 1), ("large", 1)]


def test_the_completion_rate_is_read_over_each_policys_window() -> None:
    policies = {"small": FleetPolicy(maximum=3, rate_window_s=300), "large": FleetPolicy(maximum=3, rate_window_s=60)}
    queue = Queue({"small": Workload(pending=1, running=2, completed=12)})
    [_, small] = Provisioner(MemoryFleet({"small": 2, "large": 0}), queue, policies).tick(T0)
    assert sorted(queue.asked) == [at(-300), at(-60)]
    assert small.desired == 2 and "at 2.4 completions/min" in small.reason


def test_decisions_are_kept_for_tenantml_workers() -> None:
    provisioner = Provisioner(MemoryFleet({"small": 0, "large": 0}), Queue({"small": Workload(pending=1)}), POLICIES)
    assert provisioner.decisions() == []
    provisioner.tick(T0)
    [large, small] = provisioner.decisions()
    assert summary(small) == {
        "worker_class": "small", "current": 0, "desired": 1, "min": 0, "max": 3, "busy": 0, "need": 1,
        "decided_at": T0.isoformat(), "reason": "1 pending + 0 running need 1 worker: up to 1",
    }
    assert (large.desired, large.reason) == (0, "queue empty, nothing running: stay at 0")


def test_an_unknown_worker_class_names_the_ones_the_fleet_has() -> None:
    provisioner = Provisioner(MemoryFleet({"small": 0, "large": 0}), Queue(), {"huge": FleetPolicy()})
    with pytest.raises(InvalidRequest, match=r"unknown worker class 'huge': the fleet has large, small"):
        provisioner.tick(T0)


def test_a_provisioner_needs_a_class_to_size() -> None:
    with pytest.raises(InvalidRequest, match="no worker class to size"):
        Provisioner(MemoryFleet({}), Queue(), {})
