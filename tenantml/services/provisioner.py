"""The training instance provisioner (claim 3 of the patent): each tick sizes every worker class.

A tick reads the fleet's counts and the training metadata's workload per class (pending, running,
completed within the rate window), asks :func:`tenantml.domain.provisioning.decide` for each class,
and calls ``fleet.scale`` where the desired count differs. The provisioner remembers, per class,
when it last changed the count and the open surplus window, which the decision needs for its
cooldown; that memory lives in this object only, so a restarted provisioner waits one more cooldown
before it scales down, and never scales down sooner.

A backend that fails to scale one class does not stop the others: its decision comes back with
"not applied" and the reason, and the next tick tries again from the same memory. A workload or
count that cannot be read raises, and nothing changes.

``tenantml up`` runs it every ``TENANTML_FLEET__INTERVAL_S`` (:mod:`tenantml.local.fleet`) on the
local backend, which drains: a worker removed by a scale-down first stops counting as a slot, then
is stopped only once it is idle, because Prefect's process worker kills its flow runs on SIGTERM and
leaves them Running (PrefectHQ/prefect#22528, open). The ECS backend sets a service's desired count
and does not drain yet: ECS sends the tasks it removes the same SIGTERM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from tenantml.domain.provisioning import Fleet, FleetPolicy, ScalingDecision, Surplus, Workload, decide
from tenantml.errors import InvalidRequest, ServiceUnavailable
from tenantml.ports import WorkerFleet, WorkloadReader

__all__ = ["Provisioner", "summary"]


@dataclass
class _Memory:
    changed_at: datetime | None = None
    surplus: Surplus | None = None


@dataclass
class Provisioner:
    """Sizes the classes named in ``policies`` (others in the fleet, such as the masters' pool, are left alone)."""

    fleet: WorkerFleet
    workload: WorkloadReader
    policies: Mapping[str, FleetPolicy]
    _memory: dict[str, _Memory] = field(default_factory=dict)
    _last: dict[str, ScalingDecision] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.policies:
            raise InvalidRequest("the provisioner has no worker class to size: give a policy for at least one")

    def tick(self, now: datetime) -> list[ScalingDecision]:
        """Decide every class now, scale those whose count should change; the decisions, by class name."""
        counts = self.fleet.counts()
        unknown = sorted(set(self.policies) - set(counts))
        if unknown:
            raise InvalidRequest(
                f"unknown worker class {', '.join(map(repr, unknown))}: the fleet has {', '.join(sorted(counts))}"
            )
        workloads = self._workloads(now)
        decisions = []
        for worker_class in sorted(self.policies):
            policy = self.policies[worker_class]
            memory = self._memory.setdefault(worker_class, _Memory())
            fleet = Fleet(counts[worker_class], memory.changed_at, memory.surplus)
            workload = workloads[policy.rate_window_s].get(worker_class, Workload())
            decision = self._apply(decide(worker_class, workload, fleet, policy, now), memory)
            self._last[worker_class] = decision
            decisions.append(decision)
        return decisions

    def decisions(self) -> list[ScalingDecision]:
        """The last decision of each class, by class name (none before the first tick)."""
        return [self._last[name] for name in sorted(self._last)]

    def _workloads(self, now: datetime) -> dict[float, Mapping[str, Workload]]:
        """One read per rate window among the policies (usually one for all)."""
        windows = {policy.rate_window_s for policy in self.policies.values()}
        return {window: self.workload.workload(now - timedelta(seconds=window)) for window in windows}

    def _apply(self, decision: ScalingDecision, memory: _Memory) -> ScalingDecision:
        if not decision.changes:
            memory.surplus = decision.surplus
            return decision
        try:
            self.fleet.scale(decision.worker_class, decision.desired)
        except ServiceUnavailable as err:
            return replace(decision, reason=f"{decision.reason}; not applied: {err}")
        memory.changed_at, memory.surplus = decision.at, None
        return decision


def summary(decision: ScalingDecision) -> dict[str, object]:
    """A decision as ``tenantml workers --json`` will show it."""
    return {
        "worker_class": decision.worker_class,
        "current": decision.current,
        "desired": decision.desired,
        "min": decision.minimum,
        "max": decision.maximum,
        "busy": decision.busy,
        "need": decision.need,
        "decided_at": decision.at.isoformat(),
        "reason": decision.reason,
    }
