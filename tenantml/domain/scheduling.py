"""Who gets the next worker slot: weighted fair share across the waiting tenants (issue #8, items 1 and 3).

**The share measure** is the number of trainings a tenant runs on the class now, divided by its
weight. It needs no history: the running attempts are in the training metadata at every tick, so a
plan can be checked against the current tables. It moves the moment a slot does (a start adds one,
a preemption takes one away), so "holds more than its share" is a fact of this tick and preemption
converges. Recent usage as the measure would need a ledger and a decay constant, and a tenant's
past would decide who is over its share of slots now.

What a count cannot see is time. When the waiting tenants outnumber the slots, each holds one or
none; if the oldest queued request broke that tie, the tenants that came first would win every
freed slot again and newcomers would wait for their backlogs to drain (the README's fairness
benchmark measures this as "running count only"). So at an equal count the tenant with less
recent ``usage`` per weight goes first: worker-seconds the caller supplies, e.g. those a tenant has
had since its backlog began (its attained service, which needs no decay constant either). Then the
older queued request, then the smaller request id: the same input always gives the same plan.

One call of :func:`plan` decides one tick, per worker class in name order:

- **Fill.** Each free slot goes to the tenant with the lowest (running + 1) / weight among the
  tenants whose running limit allows one more (a limit counts the tenant's trainings on every
  class); within a tenant, first come first served. The fill stops only when the class is full or
  nothing left may start: work-conserving.
- **Preemption.** When the class is full and a request has waited longer than ``preempt_after_s``,
  the slot it is owed is taken from the tenant that holds the most per weight: that tenant's most
  recently started attempt is preempted (for tenantml this is free: the attempt checkpoints and
  hands back, and later resumes bit-identically). A slot moves only when the move is strictly
  fairer, (held_victim - 1/2) / w_victim > (held_waiting + 1/2) / w_waiting, i.e. when it lowers
  the sum of held^2 / weight; so two tenants a slot apart never trade it back and forth. Attempts
  already asked to hand back count as slots on their way, so a slow hand-back is not preempted
  twice, and no more attempts are preempted than waiting requests are owed.

The preempted slot is free at a later tick, and the waiting tenant, now the least served, gets it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter

from tenantml.errors import InvalidRequest

__all__ = ["Plan", "Policy", "Preemption", "Running", "Start", "Waiting", "plan"]

_FCFS = attrgetter("queued_at", "request_id")
_STARTED = attrgetter("started_at", "request_id")


@dataclass(frozen=True, slots=True)
class Waiting:
    """An admitted request waiting for a slot; ``queued_at`` orders a tenant's requests (FCFS).

    ``waiting_since`` is when it last joined the queue (after a preemption or a failover, later than
    ``queued_at``, which keeps its place in its tenant's line); the preemption delay counts from it.
    """

    request_id: str
    tenant: str
    worker_class: str
    queued_at: datetime
    waiting_since: datetime | None = None

    @property
    def since(self) -> datetime:
        return self.waiting_since or self.queued_at


@dataclass(frozen=True, slots=True)
class Running:
    """An attempt holding a slot. ``preempting``: it was asked to hand back and has not yet."""

    request_id: str
    tenant: str
    worker_class: str
    started_at: datetime
    preempting: bool = False


@dataclass(frozen=True)
class Policy:
    """Per-tenant running limits (a tenant without one has none) and weights (1.0 unless given)."""

    limits: Mapping[str, int] = field(default_factory=dict)
    weights: Mapping[str, float] = field(default_factory=dict)
    preempt_after_s: float = 30.0
    preemption: bool = True

    def __post_init__(self) -> None:
        for tenant, limit in self.limits.items():
            if limit < 0:
                raise InvalidRequest(
                    f"running limit {limit} for tenant {tenant!r} is negative: "
                    "give 0 or more, or leave it out for no limit"
                )
        for tenant, weight in self.weights.items():
            if not 0 < weight < math.inf:
                raise InvalidRequest(
                    f"weight {weight} for tenant {tenant!r} must be a number above 0 (the default is 1.0)"
                )
        if not 0 <= self.preempt_after_s < math.inf:
            raise InvalidRequest(f"preempt_after_s {self.preempt_after_s} must be 0 or more seconds")

    def weight(self, tenant: str) -> float:
        return self.weights.get(tenant, 1.0)

    def allows(self, tenant: str, running: int) -> bool:
        """Whether the tenant may run one more training while it runs ``running`` (on all classes)."""
        limit = self.limits.get(tenant)
        return limit is None or running < limit


@dataclass(frozen=True, slots=True)
class Start:
    """Start this waiting request now, on a free slot of ``worker_class``."""

    request_id: str
    tenant: str
    worker_class: str


@dataclass(frozen=True, slots=True)
class Preemption:
    """Ask this running attempt to checkpoint and hand back; ``reason`` says for whom and why."""

    request_id: str
    tenant: str
    worker_class: str
    reason: str


@dataclass(frozen=True)
class Plan:
    starts: tuple[Start, ...] = ()
    preemptions: tuple[Preemption, ...] = ()


def plan(
    waiting: Iterable[Waiting],
    running: Iterable[Running],
    free: Mapping[str, int],
    now: datetime,
    policy: Policy | None = None,
    usage: Mapping[str, float] | None = None,
) -> Plan:
    """This tick's starts and preemptions. ``free`` has a count for every worker class of the fleet;
    ``usage`` (worker-seconds per tenant, lately) breaks ties between tenants at an equal count.

    Cost: linear in the waiting requests (one pass to index them by class and tenant), plus a heap
    operation per start and per preemption; nothing is compared pairwise.
    """
    policy, usage = policy or Policy(), usage or {}
    for tenant, seconds in usage.items():
        if not 0 <= seconds < math.inf:
            raise InvalidRequest(f"usage {seconds} for tenant {tenant!r} must be 0 or more worker-seconds")
    classes, totals = _index(waiting, running, free)
    starts: list[Start] = []
    for name in sorted(classes):
        starts += _fill(classes[name], totals, policy, usage)
    preemptions: list[Preemption] = []
    if policy.preemption:
        for name in sorted(classes):
            preemptions += _Preempter(classes[name], totals, policy, usage, now).run()
    return Plan(tuple(starts), tuple(preemptions))


class _Class:
    """One worker class during one plan: its queues (FCFS per tenant) and who holds its slots."""

    def __init__(self, name: str, free: int) -> None:
        self.name, self.free, self.slots = name, free, free
        self.queues: dict[str, list[Waiting]] = {}
        self.next: dict[str, int] = {}  # the position of each tenant's next waiting request
        self.held: dict[str, int] = {}  # slots per tenant, hand-backs under way and this tick's starts included
        self.leaving: dict[str, int] = {}  # slots per tenant that are being handed back
        self.attempts: dict[str, list[Running]] = {}  # preemptable attempts per tenant, oldest first

    def hold(self, attempt: Running) -> None:
        self.slots += 1
        self.held[attempt.tenant] = self.held.get(attempt.tenant, 0) + 1
        if attempt.preempting:
            self.leaving[attempt.tenant] = self.leaving.get(attempt.tenant, 0) + 1
        else:
            self.attempts.setdefault(attempt.tenant, []).append(attempt)

    def order(self) -> None:
        for queue in self.queues.values():
            if len(queue) > 1:
                queue.sort(key=_FCFS)
        for attempts in self.attempts.values():
            attempts.sort(key=_STARTED)
        self.next = dict.fromkeys(self.queues, 0)

    def waiting(self, tenant: str, ahead: int = 0) -> Waiting | None:
        """The tenant's next waiting request, after skipping ``ahead`` of them."""
        queue, at = self.queues.get(tenant, ()), self.next.get(tenant, 0) + ahead
        return queue[at] if at < len(queue) else None


def _index(
    waiting: Iterable[Waiting], running: Iterable[Running], free: Mapping[str, int]
) -> tuple[dict[str, _Class], dict[str, int]]:
    classes: dict[str, _Class] = {}
    for name, count in free.items():
        if count < 0:
            raise InvalidRequest(f"free slots of worker class {name!r} is {count}: give a count of 0 or more")
        classes[name] = _Class(name, count)
    totals: dict[str, int] = {}  # running trainings per tenant, on every class
    for attempt in running:
        _known(classes, attempt.worker_class, attempt.request_id).hold(attempt)
        totals[attempt.tenant] = totals.get(attempt.tenant, 0) + 1
    for item in waiting:
        cls = classes.get(item.worker_class) or _known(classes, item.worker_class, item.request_id)
        queue = cls.queues.get(item.tenant)
        if queue is None:
            cls.queues[item.tenant] = [item]
        else:
            queue.append(item)
    for cls in classes.values():
        cls.order()
    return classes, totals


def _known(classes: dict[str, _Class], name: str, request_id: str) -> _Class:
    if name not in classes:
        raise InvalidRequest(
            f"request {request_id!r} is for worker class {name!r}, which the fleet does not have: "
            f"use one of {', '.join(sorted(classes)) or '(none: give free slots per class)'}"
        )
    return classes[name]


def _fill(cls: _Class, totals: dict[str, int], policy: Policy, usage: Mapping[str, float]) -> list[Start]:
    def key(tenant: str) -> tuple[float, float, datetime, str, str]:
        head, weight = cls.queues[tenant][cls.next[tenant]], policy.weight(tenant)
        share = (cls.held.get(tenant, 0) + 1) / weight
        return share, usage.get(tenant, 0.0) / weight, head.queued_at, head.request_id, tenant

    if not cls.free:
        return []
    heap = [key(tenant) for tenant in cls.queues if policy.allows(tenant, totals.get(tenant, 0))]
    heapq.heapify(heap)
    starts: list[Start] = []
    while cls.free and heap:
        tenant = heapq.heappop(heap)[4]
        at = cls.next[tenant]
        starts.append(Start(cls.queues[tenant][at].request_id, tenant, cls.name))
        cls.next[tenant] = at + 1
        cls.held[tenant] = cls.held.get(tenant, 0) + 1
        totals[tenant] = totals.get(tenant, 0) + 1
        cls.free -= 1
        if at + 1 < len(cls.queues[tenant]) and policy.allows(tenant, totals[tenant]):
            heapq.heappush(heap, key(tenant))
    return starts


class _Preempter:
    """The preemptions of one full class: owed slots to the least served, from the most served.

    ``owned`` counts slots per tenant as they will be once this tick's hand-backs are done: what
    it holds, less what it is handing back, plus what this tick promised it. Heap entries carry the
    count they were made with; an entry whose count is no longer current is stale and skipped.
    """

    def __init__(
        self, cls: _Class, totals: dict[str, int], policy: Policy, usage: Mapping[str, float], now: datetime
    ) -> None:
        self.cls, self.totals, self.policy, self.usage, self.now = cls, totals, policy, usage, now
        self.deadline = now - timedelta(seconds=policy.preempt_after_s)
        self.owned = {tenant: held - cls.leaving.get(tenant, 0) for tenant, held in cls.held.items()}
        self.promised: dict[str, int] = {}
        self.needy: list[tuple[float, float, datetime, str, int, str]] = []
        self.victims: list[tuple[float, float, str, int, str]] = []
        self.level: float | None = None

    def run(self) -> list[Preemption]:
        if self.cls.free:
            return []  # the fill stopped short of a full class: nothing that may start is waiting
        for tenant in self.cls.attempts:
            self._push_victim(tenant)
        on_the_way = sum(self.cls.leaving.values())
        if not self.victims and not on_the_way:
            return []
        self.needy = [entry for tenant in self.cls.queues if (entry := self._needy(tenant)) is not None]
        heapq.heapify(self.needy)
        preemptions: list[Preemption] = []
        while self.needy:
            entry = heapq.heappop(self.needy)
            tenant, item = entry[5], self._starving(entry[5])
            if entry[4] != self.owned.get(tenant, 0) or item is None or item.request_id != entry[3]:
                continue
            if on_the_way:
                on_the_way -= 1
            else:
                preemption = self._take_for(tenant, item)
                if preemption is None:
                    break
                preemptions.append(preemption)
            self.promised[tenant] = self.promised.get(tenant, 0) + 1
            self._change(tenant, +1)
        return preemptions

    def _take_for(self, tenant: str, item: Waiting) -> Preemption | None:
        victim = self._top_victim()
        if victim is None:
            return None
        weight, victim_weight = self.policy.weight(tenant), self.policy.weight(victim)
        holds = self.owned[victim]
        if not (holds - 0.5) / victim_weight > (self.owned.get(tenant, 0) + 0.5) / weight:
            return None  # the least served waiting tenant is not a full slot short of the most served
        attempt = self.cls.attempts[victim].pop()
        self._change(victim, -1)
        wait = (self.now - item.since).total_seconds()
        share = min(self._demand(victim), self._fair_level() * victim_weight)
        reason = (
            f"tenant {tenant!r} has waited {wait:.0f} s for a {self.cls.name!r} slot (preemption after "
            f"{self.policy.preempt_after_s:g} s) while tenant {victim!r} holds {holds} of the class's "
            f"{self.cls.slots} slots, over its fair share of {share:.2f}"
        )
        return Preemption(attempt.request_id, victim, self.cls.name, reason)

    def _change(self, tenant: str, by: int) -> None:
        self.owned[tenant] = self.owned.get(tenant, 0) + by
        self._push_needy(tenant)
        self._push_victim(tenant)

    def _starving(self, tenant: str) -> Waiting | None:
        """The tenant's next request not yet promised a slot, if it waited too long and may start."""
        promised = self.promised.get(tenant, 0)
        item = self.cls.waiting(tenant, ahead=promised)
        if item is None or not item.since < self.deadline:
            return None
        return item if self.policy.allows(tenant, self.totals.get(tenant, 0) + promised) else None

    def _needy(self, tenant: str) -> tuple[float, float, datetime, str, int, str] | None:
        item = self._starving(tenant)
        if item is None:
            return None
        owned, weight = self.owned.get(tenant, 0), self.policy.weight(tenant)
        share, usage = (owned + 0.5) / weight, self.usage.get(tenant, 0.0) / weight
        return share, usage, item.queued_at, item.request_id, owned, tenant

    def _push_needy(self, tenant: str) -> None:
        entry = self._needy(tenant)
        if entry is not None:
            heapq.heappush(self.needy, entry)

    def _push_victim(self, tenant: str) -> None:
        attempts = self.cls.attempts.get(tenant)
        if attempts:
            owned, newest = self.owned[tenant], attempts[-1]
            key = -(owned - 0.5) / self.policy.weight(tenant)
            heapq.heappush(self.victims, (key, -newest.started_at.timestamp(), newest.request_id, owned, tenant))

    def _top_victim(self) -> str | None:
        while self.victims:
            _, _, request_id, owned, tenant = heapq.heappop(self.victims)
            attempts = self.cls.attempts[tenant]
            if owned == self.owned[tenant] and attempts and attempts[-1].request_id == request_id:
                return tenant
        return None

    def _demand(self, tenant: str) -> int:
        """Slots the tenant could use on the class: what it holds, and what waits that its limit allows."""
        held, queued = self.cls.held.get(tenant, 0), len(self.cls.queues.get(tenant, ())) - self.cls.next.get(tenant, 0)
        limit = self.policy.limits.get(tenant)
        if limit is not None:
            queued = max(0, min(queued, limit - self.totals.get(tenant, 0)))
        return held + queued

    def _fair_level(self) -> float:
        """Max-min fairness: tenant t's fair share is min(demand_t, level * weight_t), filling the class."""
        if self.level is None:
            demands = [(d / self.policy.weight(t), d, self.policy.weight(t))
                       for t in self.cls.held.keys() | self.cls.queues.keys() if (d := self._demand(t))]
            demands.sort()
            capacity, weight, self.level = float(self.cls.slots), sum(w for _, _, w in demands), math.inf
            for ratio, demand, w in demands:
                if ratio * weight >= capacity:
                    self.level = capacity / weight
                    break
                capacity, weight = capacity - demand, weight - w
        return self.level
