"""How many training workers a class should have (claim 3 of the patent): the provisioner's decision.

Per worker class, from the requests waiting for it, the trainings running on it, the recent
completion rate and the fleet as it stands, :func:`decide` returns the desired number of workers
and the reason in words. The rule:

- **Need** is ``ceil((pending + running) / runs_per_worker)``, as Airflow's Helm chart sizes its
  Celery workers (``ceil((running + queued) / worker_concurrency)``); it is kept between ``minimum``
  and ``maximum`` (both may be zero: an idle class costs nothing).
- **Up at once.** A backlog is served on the tick that sees it, bounded by the maximum (KEDA
  polls every 30 s by default). Only one thing holds it back: the queue the current workers drain
  by themselves. The backlog is what the free slots cannot take (``pending - free``); at the recent
  completion rate (``completed`` within ``rate_window_s``, per minute) the current workers start
  ``floor(rate * drain_horizon_s / 60)`` of it within the horizon, before a new worker would be
  up, so only the rest asks for new workers: ``ceil(rest / runs_per_worker)`` more. A class with
  no worker now drains nothing, whatever its past rate; a zero horizon turns the rule off.
- **Down late, and not below the peak** (the hysteresis). A need below the current count opens a
  surplus window; the class goes down only when the window, and the time since the last change,
  have both lasted ``cooldown_s``, and then only to the highest need seen during the window
  (Kubernetes' HPA keeps the highest recommendation of its stabilization window for the same
  reason). Any need at or above the current count closes the window, so a queue that empties and
  fills again within the cooldown never costs a restart. KEDA scales to zero after 300 s without
  activity, Airflow's chart gives a removed worker 600 s to finish its tasks, Ray removes only
  nodes idle for 5 min. This never asks for fewer workers than the busy ones, since the need
  counts the running trainings; which workers go, and that they finish first, is the backend's
  drain.
- **A maximum lowered below the current count** applies at once: the operator's cap is a limit,
  not a wish.

The window is state: :class:`Surplus` goes into a decision and comes back with the next
:class:`Fleet`. A provisioner that restarts starts without one, which only delays a scale-down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

from tenantml.errors import InvalidRequest

__all__ = ["Fleet", "FleetPolicy", "ScalingDecision", "Surplus", "Workload", "decide"]


@dataclass(frozen=True)
class FleetPolicy:
    """The operator's bounds and pace for one worker class."""

    minimum: int = 0
    maximum: int = 1
    runs_per_worker: int = 1
    cooldown_s: float = 60.0  # a need below the count must last this long before a scale-down
    drain_horizon_s: float = 30.0  # about a new worker's start-up: the backlog drained sooner asks for none
    rate_window_s: float = 300.0  # the completions counted for the rate

    def __post_init__(self) -> None:
        for name in ("minimum", "maximum"):
            _not_negative(name, getattr(self, name))
        if self.minimum > self.maximum:
            raise InvalidRequest(
                f"minimum {self.minimum} is above maximum {self.maximum} workers: "
                "lower the minimum or raise the maximum"
            )
        if self.runs_per_worker < 1:
            raise InvalidRequest(
                f"runs per worker {self.runs_per_worker} is below 1: a worker runs at least one training"
            )
        for name in ("cooldown_s", "drain_horizon_s"):
            _not_negative(name, getattr(self, name))
        if self.rate_window_s <= 0:
            raise InvalidRequest(
                f"rate_window_s {self.rate_window_s} is not positive: count completions over some seconds"
            )


@dataclass(frozen=True)
class Workload:
    """A class's requests: waiting for a worker, running on one, and completed within the rate window."""

    pending: int = 0
    running: int = 0
    completed: int = 0

    def __post_init__(self) -> None:
        for name in ("pending", "running", "completed"):
            _not_negative(name, getattr(self, name))


@dataclass(frozen=True)
class Surplus:
    """A need below the current count, observed since ``since``; ``peak`` is its highest since then."""

    since: datetime
    peak: int


@dataclass(frozen=True)
class Fleet:
    """A class's workers now, when the provisioner last changed their number, and its open surplus window."""

    current: int
    changed_at: datetime | None = None
    surplus: Surplus | None = None

    def __post_init__(self) -> None:
        _not_negative("current", self.current)


@dataclass(frozen=True)
class ScalingDecision:
    """What :func:`decide` concluded for one class, with everything ``tenantml workers`` shows."""

    worker_class: str
    at: datetime
    current: int
    desired: int
    need: int
    busy: int  # workers the running trainings occupy
    minimum: int
    maximum: int
    reason: str
    surplus: Surplus | None = None  # carry into the next Fleet

    @property
    def changes(self) -> bool:
        return self.desired != self.current


def decide(worker_class: str, workload: Workload, fleet: Fleet, policy: FleetPolicy, now: datetime) -> ScalingDecision:
    """The desired number of ``worker_class`` workers now; see the module's docstring for the rule."""
    rpw = policy.runs_per_worker
    need = math.ceil((workload.pending + workload.running) / rpw)
    target = min(max(need, policy.minimum), policy.maximum)
    held = ScalingDecision(
        worker_class, now, fleet.current, fleet.current, need, math.ceil(workload.running / rpw),
        policy.minimum, policy.maximum, reason="",
    )
    load = _load(workload, need, rpw)
    if fleet.current > policy.maximum:
        return replace(held, desired=policy.maximum, reason=f"{load}; above max {policy.maximum}: down to it at once")
    if target > fleet.current:
        return _up(held, load, target, workload, fleet, policy)
    if target == fleet.current:
        return replace(held, reason=f"{load}{_bounded(need, target, policy)}: stay at {fleet.current}")
    return _down(held, load, target, fleet, policy, now)


def _up(
    held: ScalingDecision, load: str, target: int, workload: Workload, fleet: Fleet, policy: FleetPolicy
) -> ScalingDecision:
    """Up to ``target`` now, less the backlog the current workers will start within the horizon."""
    bounded = _bounded(held.need, target, policy)
    rate = workload.completed * 60.0 / policy.rate_window_s
    drained = math.floor(rate * policy.drain_horizon_s / 60.0) if fleet.current > 0 else 0
    if drained == 0 or fleet.current < policy.minimum:
        return replace(held, desired=target, reason=f"{load}{bounded}: up to {target}")
    free = fleet.current * policy.runs_per_worker - workload.running
    backlog = workload.pending - max(free, 0)
    extra = math.ceil(max(backlog - drained, 0) / policy.runs_per_worker)
    desired = min(fleet.current + extra, target)
    drains = (
        f"the {fleet.current} worker{_s(fleet.current)} start {min(drained, backlog)} of the {backlog} queued "
        f"within {policy.drain_horizon_s:g} s at {rate:.1f} completions/min"
    )
    if desired == fleet.current:
        return replace(held, reason=f"{load}{bounded}; {drains}: stay at {fleet.current}")
    return replace(held, desired=desired, reason=f"{load}{bounded}; {drains}: up to {desired}")


def _down(
    held: ScalingDecision, load: str, target: int, fleet: Fleet, policy: FleetPolicy, now: datetime
) -> ScalingDecision:
    """Down to the window's peak once the surplus and the last change are ``cooldown_s`` old."""
    surplus = fleet.surplus or Surplus(now, target)
    surplus = Surplus(surplus.since, max(surplus.peak, target))
    started = max(surplus.since, fleet.changed_at) if fleet.changed_at is not None else surplus.since
    waited = max((now - started).total_seconds(), 0.0)
    lasted = max((now - surplus.since).total_seconds(), 0.0)
    below = f"{load}{_bounded(held.need, target, policy)}; below {fleet.current} for {lasted:.0f} s"
    if waited < policy.cooldown_s:
        left = policy.cooldown_s - waited
        return replace(
            held, surplus=surplus,
            reason=f"{below}: stay at {fleet.current} for the {policy.cooldown_s:g} s cooldown ({left:.0f} s left)",
        )
    to = f"min {surplus.peak}" if surplus.peak == policy.minimum else str(surplus.peak)
    peak = "" if surplus.peak == target else ", the window's peak need"
    return replace(
        held, desired=surplus.peak,
        reason=f"{below}: down to {to}{peak} after the {policy.cooldown_s:g} s cooldown",
    )


def _load(workload: Workload, need: int, runs_per_worker: int) -> str:
    if workload.pending == workload.running == 0:
        return "queue empty, nothing running"
    each = f" at {runs_per_worker} runs each" if runs_per_worker > 1 else ""
    return f"{workload.pending} pending + {workload.running} running need {need} worker{_s(need)}{each}"


def _bounded(need: int, target: int, policy: FleetPolicy) -> str:
    if need > target:
        return f"; capped at max {policy.maximum}"
    if need < target:
        return f"; min {policy.minimum} holds {target}"
    return ""


def _not_negative(name: str, value: float) -> None:
    if value < 0:
        raise InvalidRequest(f"{name} {value} is negative: give a count or duration of 0 or more")


def _s(count: int) -> str:
    return "" if count == 1 else "s"
