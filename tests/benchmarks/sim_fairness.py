"""A simulated clock and fleet that drive a scheduling policy past this machine (issue #8, "by simulation").

The trace: tenants with heavy-tailed backlogs (Pareto), each queued as one burst at a random moment
of the arrival window, and heavy-tailed durations (lognormal), from a fixed seed; one worker class.
Every tick the policy sees what waits and what runs and returns a plan. Starts begin at the tick. A
preempted attempt hands back after ``handback_s`` and, when it resumes, redoes ``redo_s`` of work
(what it trained since its last checkpoint); it keeps its place in its tenant's queue.

Both policies get the same trace, the same ticks and the same inputs; only ``decide`` differs.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from tenantml.domain.scheduling import Plan, Policy, Running, Start, Waiting, plan

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
CLASS = "small"

Decide = Callable[[Iterable[Waiting], Iterable[Running], Mapping[str, int], datetime, Mapping[str, float]], Plan]


@dataclass(frozen=True)
class Request:
    request_id: str
    tenant: str
    queued_s: float
    duration_s: float


@dataclass(frozen=True)
class Trace:
    requests: tuple[Request, ...]  # in queue order
    tenants: tuple[str, ...]
    workers: int
    small: frozenset[str]  # the tenants whose backlog is at most the median backlog


def make_trace(
    tenants: int,
    requests: int,
    workers: int,
    seed: int = 8,
    arrival_window_s: float = 600.0,
    median_duration_s: float = 60.0,
) -> Trace:
    """Backlogs ~ Pareto(1.2) summing to ``requests``; durations ~ lognormal(median, sigma 1), 5 s to 1 h."""
    rng = np.random.default_rng(seed)
    raw = rng.pareto(1.2, tenants) + 1.0
    exact = raw / raw.sum() * (requests - tenants)
    backlog = 1 + np.floor(exact).astype(int)
    short = requests - int(backlog.sum())
    backlog[np.argsort(exact - np.floor(exact))[::-1][:short]] += 1  # largest remainders
    bursts = rng.uniform(0.0, arrival_window_s, tenants)
    durations = np.clip(rng.lognormal(np.log(median_duration_s), 1.0, requests), 5.0, 3600.0)
    names = tuple(f"tenant-{i:05d}" for i in range(tenants))
    queued = sorted((bursts[i] + 0.01 * j, i) for i in range(tenants) for j in range(backlog[i]))
    trace = tuple(
        Request(f"r{n:06d}", names[i], float(at), float(durations[n])) for n, (at, i) in enumerate(queued)
    )
    median = float(np.median(backlog))
    small = frozenset(names[i] for i in range(tenants) if backlog[i] <= median)
    return Trace(trace, names, workers, small)


def fair_share(policy: Policy, attained: bool = True) -> Decide:
    def decide(
        waiting: Iterable[Waiting], running: Iterable[Running], free: Mapping[str, int], now: datetime,
        usage: Mapping[str, float],
    ) -> Plan:
        return plan(waiting, running, free, now, policy, usage if attained else None)

    return decide


def fifo(
    waiting: Iterable[Waiting], running: Iterable[Running], free: Mapping[str, int], now: datetime,
    usage: Mapping[str, float],
) -> Plan:
    """Today's order (Prefect's queue): the oldest requests first, whatever their tenant; no preemption."""
    by_class: dict[str, list[Waiting]] = {name: [] for name in free}
    for item in waiting:
        by_class[item.worker_class].append(item)
    starts = tuple(
        Start(item.request_id, item.tenant, name)
        for name, count in sorted(free.items())
        for item in heapq.nsmallest(count, by_class[name], key=lambda w: (w.queued_at, w.request_id))
    )
    return Plan(starts)


@dataclass
class Outcome:
    decision_s: list[float]  # per tick with something waiting
    waiting_per_tick: list[int]  # how many waited at that tick
    waits_s: dict[str, float]  # request id -> queued until its first start
    small_waits_s: list[float]
    jain: float
    utilisation: float  # busy / offered worker-seconds while requests wait
    makespan_s: float
    preemptions: int
    redone_s: float


@dataclass
class _Fleet:
    """The simulated state: what waits, what runs and until when, and per-tenant counts for the metrics."""

    trace: Trace
    index: dict[str, int]
    waiting: dict[str, Waiting] = field(default_factory=dict)
    running: dict[str, Running] = field(default_factory=dict)
    remaining: dict[str, float] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)
    heap: list[tuple[float, str]] = field(default_factory=list)  # entries whose end is not in ``ends`` are stale
    first_start: dict[str, float] = field(default_factory=dict)
    done: int = 0
    last_end: float = 0.0
    preemptions: int = 0
    redone_s: float = 0.0
    busy_s: float = 0.0  # worker-seconds in use during the ticks that left a request waiting
    offered_s: float = 0.0  # and worker-seconds the fleet had during them

    def __post_init__(self) -> None:
        self.held = np.zeros(len(self.trace.tenants))
        self.queued = np.zeros(len(self.trace.tenants))
        self.received = np.zeros(len(self.trace.tenants))
        self.entitled = np.zeros(len(self.trace.tenants))
        self.attained = np.zeros(len(self.trace.tenants))  # worker-seconds since the tenant's backlog began

    def usage(self) -> dict[str, float]:
        active = np.flatnonzero(self.attained)
        return dict(zip([self.trace.tenants[i] for i in active], self.attained[active].tolist()))

    def enqueue(self, item: Waiting) -> None:
        self.waiting[item.request_id] = item
        self.queued[self.index[item.tenant]] += 1

    def finish_until(self, now: float, requeue: Callable[[str], Waiting]) -> None:
        while self.heap and self.heap[0][0] <= now:
            end, request_id = heapq.heappop(self.heap)
            if request_id not in self.running or self.ends[request_id] != end:
                continue  # a preempted attempt's planned end
            attempt = self.running.pop(request_id)
            self.held[self.index[attempt.tenant]] -= 1
            if attempt.preempting:
                self.enqueue(requeue(request_id))
            else:
                self.done += 1
                self.last_end = max(self.last_end, end)

    def start(self, start: Start, now: float, at: datetime) -> None:
        item = self.waiting.pop(start.request_id)
        self.queued[self.index[item.tenant]] -= 1
        self.held[self.index[item.tenant]] += 1
        self.running[start.request_id] = Running(start.request_id, item.tenant, start.worker_class, at)
        self.first_start.setdefault(start.request_id, now)
        self._end_at(start.request_id, now + self.remaining[start.request_id])

    def preempt(self, request_id: str, now: float, handback_s: float, redo_s: float) -> None:
        attempt = self.running[request_id]
        self.running[request_id] = Running(request_id, attempt.tenant, attempt.worker_class, attempt.started_at, True)
        self.remaining[request_id] = self.ends[request_id] - now + redo_s
        self.preemptions, self.redone_s = self.preemptions + 1, self.redone_s + redo_s
        self._end_at(request_id, now + handback_s)

    def _end_at(self, request_id: str, end: float) -> None:
        self.ends[request_id] = end
        heapq.heappush(self.heap, (end, request_id))

    def occupy(self, now: float, dt: float) -> None:
        """How busy the fleet is until the next tick, counted only if a request is left waiting."""
        if self.waiting:
            self.busy_s += sum(min(self.ends[request_id] - now, dt) for request_id in self.running)
            self.offered_s += self.trace.workers * dt

    def account(self, dt: float) -> None:
        """Worker-time received against the max-min fair entitlement, for every tenant that waits or runs."""
        demand = self.held + self.queued
        self.attained[demand == 0] = 0.0
        self.attained += self.held * dt
        active = np.flatnonzero(demand)
        if active.size:
            share = np.minimum(demand[active], fair_level(demand[active], self.trace.workers))
            self.received[active] += self.held[active] * dt
            self.entitled[active] += share * dt


def fair_level(demand: np.ndarray, capacity: float) -> float:
    """The water level of max-min fairness (equal weights): tenant t's fair share is min(demand_t, level)."""
    d = np.sort(demand)
    n = d.size
    below = np.concatenate(([0.0], np.cumsum(d)[:-1]))
    capped = below + d * (n - np.arange(n))  # the total if every demand were capped at d[i]; nondecreasing
    i = int(np.searchsorted(capped, capacity))
    return float("inf") if i == n else float((capacity - below[i]) / (n - i))


def jain(values: np.ndarray) -> float:
    """Jain's fairness index: 1.0 when all values are equal, 1/n when one holds everything."""
    return float(values.sum() ** 2 / (values.size * (values**2).sum())) if values.size else 1.0


def simulate(
    trace: Trace, decide: Decide, tick_s: float = 5.0, handback_s: float = 2.0, redo_s: float = 2.5
) -> Outcome:
    by_id = {r.request_id: r for r in trace.requests}
    fleet = _Fleet(trace, {name: i for i, name in enumerate(trace.tenants)})
    fleet.remaining = {r.request_id: r.duration_s for r in trace.requests}

    def waiting(request_id: str) -> Waiting:
        r = by_id[request_id]
        return Waiting(request_id, r.tenant, CLASS, EPOCH + timedelta(seconds=r.queued_s))

    decision_s: list[float] = []
    waiting_per_tick: list[int] = []
    arrived, now = 0, 0.0
    while fleet.done < len(trace.requests):
        fleet.finish_until(now, waiting)
        while arrived < len(trace.requests) and trace.requests[arrived].queued_s <= now:
            fleet.enqueue(waiting(trace.requests[arrived].request_id))
            arrived += 1
        if fleet.waiting:
            waiting_per_tick.append(len(fleet.waiting))
            at = EPOCH + timedelta(seconds=now)
            started = time.perf_counter()
            free = {CLASS: trace.workers - len(fleet.running)}
            decision = decide(fleet.waiting.values(), fleet.running.values(), free, at, fleet.usage())
            decision_s.append(time.perf_counter() - started)
            for start in decision.starts:
                fleet.start(start, now, at)
            for preemption in decision.preemptions:
                fleet.preempt(preemption.request_id, now, handback_s, redo_s)
        fleet.occupy(now, tick_s)
        fleet.account(tick_s)
        now += tick_s
    return _outcome(trace, fleet, decision_s, waiting_per_tick)


def _outcome(trace: Trace, fleet: _Fleet, decision_s: list[float], waiting_per_tick: list[int]) -> Outcome:
    waits = {r.request_id: fleet.first_start[r.request_id] - r.queued_s for r in trace.requests}
    small = [waits[r.request_id] for r in trace.requests if r.tenant in trace.small]
    span = fleet.last_end - trace.requests[0].queued_s
    entitled = fleet.entitled > 0
    return Outcome(
        decision_s=decision_s,
        waiting_per_tick=waiting_per_tick,
        waits_s=waits,
        small_waits_s=small,
        jain=jain(fleet.received[entitled] / fleet.entitled[entitled]),
        utilisation=fleet.busy_s / fleet.offered_s if fleet.offered_s else 1.0,
        makespan_s=span,
        preemptions=fleet.preemptions,
        redone_s=fleet.redone_s,
    )


def percentile(values: Iterable[float], q: float) -> float:
    return float(np.percentile(np.fromiter(values, dtype=float), q))
