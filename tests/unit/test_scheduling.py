"""The fair-share scheduling policy (issue #8), on plain domain objects: no store, no clock."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tenantml.domain.scheduling import Plan, Policy, Running, Waiting, plan
from tenantml.errors import InvalidRequest
from tests.benchmarks.sim_fairness import fair_share, fifo, make_trace, percentile, simulate

T0 = datetime(2030, 1, 1, tzinfo=UTC)
SMALL, LARGE = "small", "large"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def queue(tenant: str, count: int, from_s: float = 0.0, worker_class: str = SMALL) -> list[Waiting]:
    """``count`` requests of ``tenant``, one a second from ``from_s``."""
    return [Waiting(f"{tenant}-{n:03d}", tenant, worker_class, at(from_s + n)) for n in range(count)]


def holding(tenant: str, count: int, from_s: float = 0.0, worker_class: str = SMALL) -> list[Running]:
    """``count`` running attempts of ``tenant``, started one a second from ``from_s`` (the last is the newest)."""
    return [Running(f"{tenant}-run-{n:03d}", tenant, worker_class, at(from_s + n)) for n in range(count)]


def started(decision: Plan, tenant: str) -> list[str]:
    return [start.request_id for start in decision.starts if start.tenant == tenant]


def test_a_small_tenant_shares_the_slots_with_a_big_backlog_queued_before_it() -> None:
    decision = plan(queue("big", 10) + queue("tiny", 2, from_s=100), [], {SMALL: 4}, at(200))
    assert started(decision, "tiny") == ["tiny-000", "tiny-001"]
    assert started(decision, "big") == ["big-000", "big-001"]


def test_the_tenant_running_less_gets_the_next_slot() -> None:
    decision = plan(queue("big", 5) + queue("tiny", 5, from_s=100), holding("big", 3), {SMALL: 1}, at(200))
    assert started(decision, "tiny") == ["tiny-000"]


def test_a_tenant_s_requests_start_first_come_first_served_whatever_the_input_order() -> None:
    waiting = queue("acme", 5)
    decision = plan(list(reversed(waiting)), [], {SMALL: 3}, at(10))
    assert started(decision, "acme") == ["acme-000", "acme-001", "acme-002"]


def test_a_lone_tenant_gets_every_free_slot() -> None:
    decision = plan(queue("acme", 10), holding("acme", 2), {SMALL: 5, LARGE: 0}, at(20))
    assert len(decision.starts) == 5


def test_slots_a_limited_tenant_may_not_use_go_to_the_others() -> None:
    policy = Policy(limits={"capped": 2})
    waiting = queue("capped", 10) + queue("other", 10, from_s=50)
    decision = plan(waiting, holding("capped", 1), {SMALL: 6}, at(100), policy)
    assert len(started(decision, "capped")) == 1
    assert len(started(decision, "other")) == 5


def test_the_running_limit_counts_every_worker_class() -> None:
    policy = Policy(limits={"acme": 2, "frozen": 0})
    waiting = queue("acme", 5) + queue("frozen", 3)
    decision = plan(waiting, holding("acme", 1, worker_class=LARGE), {SMALL: 4, LARGE: 0}, at(10), policy)
    assert started(decision, "acme") == ["acme-000"]
    assert started(decision, "frozen") == []


def test_slots_are_shared_in_proportion_to_weights() -> None:
    policy = Policy(weights={"gold": 2.0})
    decision = plan(queue("gold", 10) + queue("plain", 10), [], {SMALL: 6}, at(20), policy)
    assert (len(started(decision, "gold")), len(started(decision, "plain"))) == (4, 2)


def test_between_tenants_running_as_much_the_one_with_less_usage_goes_first() -> None:
    waiting = queue("old", 3) + queue("new", 3, from_s=50)
    decision = plan(waiting, [], {SMALL: 1}, at(100), usage={"old": 600.0})
    assert started(decision, "new") == ["new-000"]
    assert started(plan(waiting, [], {SMALL: 1}, at(100)), "old") == ["old-000"]  # no usage: the older request


def test_a_full_class_preempts_the_over_share_tenant_s_newest_attempt_after_the_delay() -> None:
    running = holding("big", 4) + holding("fair", 1)
    waiting = queue("big", 20) + [Waiting("tiny-000", "tiny", SMALL, at(100))]
    early = plan(waiting, running, {SMALL: 0}, at(129))
    assert early.preemptions == ()
    decision = plan(waiting, running, {SMALL: 0}, at(131))
    assert [(p.tenant, p.request_id) for p in decision.preemptions] == [("big", "big-run-003")]
    reason = decision.preemptions[0].reason
    assert "'tiny' has waited 31 s" in reason and "'big' holds 4 of the class's 5 slots" in reason
    assert "fair share of 3.00" in reason  # max-min over the demands 24, 1 and 1


def test_no_more_attempts_are_preempted_than_waiting_requests_are_owed() -> None:
    waiting = [Waiting("tiny-000", "tiny", SMALL, at(0))]
    decision = plan(waiting, holding("big", 8), {SMALL: 0}, at(100))
    assert len(decision.preemptions) == 1


def test_an_attempt_already_handing_back_is_not_doubled_by_another_preemption() -> None:
    leaving = Running("big-run-leaving", "big", SMALL, at(50), preempting=True)
    waiting = [Waiting("tiny-000", "tiny", SMALL, at(0))]
    decision = plan(waiting, holding("big", 7) + [leaving], {SMALL: 0}, at(100))
    assert decision.preemptions == ()


def test_two_tenants_one_slot_apart_do_not_trade_it_back_and_forth() -> None:
    waiting = queue("b", 3)
    decision = plan(waiting, holding("a", 2) + holding("b", 1), {SMALL: 0}, at(100))
    assert decision.preemptions == ()


def test_a_tenant_at_its_running_limit_preempts_nobody() -> None:
    policy = Policy(limits={"tiny": 1})
    decision = plan(queue("tiny", 2), holding("big", 5) + holding("tiny", 1), {SMALL: 0}, at(100), policy)
    assert decision.preemptions == ()


def test_preemption_can_be_switched_off() -> None:
    waiting = [Waiting("tiny-000", "tiny", SMALL, at(0))]
    decision = plan(waiting, holding("big", 8), {SMALL: 0}, at(1000), Policy(preemption=False))
    assert decision.preemptions == ()


def test_the_same_input_in_any_order_gives_the_same_plan() -> None:
    waiting = queue("a", 30) + queue("b", 30) + queue("c", 5, from_s=20) + [Waiting("d-0", "d", SMALL, at(0))]
    running = holding("a", 6) + holding("b", 2, from_s=3)
    first = plan(waiting, running, {SMALL: 0}, at(500))
    shuffled = random.Random(8)
    for _ in range(5):
        shuffled.shuffle(waiting)
        shuffled.shuffle(running)
        assert plan(waiting, running, {SMALL: 0}, at(500)) == first
    assert first.preemptions


def test_ties_go_to_the_older_request_then_the_smaller_id() -> None:
    waiting = [Waiting("r-2", "x", SMALL, at(5)), Waiting("r-1", "y", SMALL, at(5)), Waiting("r-0", "z", SMALL, at(6))]
    decision = plan(waiting, [], {SMALL: 2}, at(10))
    assert [start.request_id for start in decision.starts] == ["r-1", "r-2"]


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: Policy(limits={"acme": -1}), "-1"),
        (lambda: Policy(weights={"acme": 0.0}), "0.0"),
        (lambda: Policy(preempt_after_s=-5), "-5"),
        (lambda: plan(queue("acme", 1, worker_class="gpu"), [], {SMALL: 1}, T0), "'gpu'"),
        (lambda: plan([], holding("acme", 1, worker_class="gpu"), {SMALL: 1}, T0), "'gpu'"),
        (lambda: plan([], [], {SMALL: -2}, T0), "-2"),
        (lambda: plan([], [], {SMALL: 1}, T0, usage={"acme": -1.0}), "-1.0"),
    ],
)
def test_bad_input_is_refused_naming_the_value(make: Callable[[], object], named: str) -> None:
    with pytest.raises(InvalidRequest, match=named):
        make()


def test_in_a_small_simulation_fair_share_makes_small_tenants_wait_less_than_fifo() -> None:
    trace = make_trace(tenants=60, requests=240, workers=10, seed=8, arrival_window_s=2000.0)
    fair, fcfs = simulate(trace, fair_share(Policy())), simulate(trace, fifo)
    assert percentile(fair.small_waits_s, 95) < percentile(fcfs.small_waits_s, 95)
    assert fair.jain > fcfs.jain
    assert len(fair.waits_s) == len(fcfs.waits_s) == 240  # every request started under both
