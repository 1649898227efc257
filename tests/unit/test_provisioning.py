"""The provisioner's decision on plain values: up at once within max, down after a cooldown, never flapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tenantml.domain.provisioning import Fleet, FleetPolicy, ScalingDecision, Surplus, Workload, decide
from tenantml.errors import InvalidRequest

T0 = datetime(2025, 1, 1, tzinfo=UTC)
POLICY = FleetPolicy(minimum=0, maximum=4, runs_per_worker=1, cooldown_s=60, drain_horizon_s=30, rate_window_s=300)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(loads: list[Workload], policy: FleetPolicy = POLICY, current: int = 0, every_s: float = 10) -> list[int]:
    """Tick every ``every_s`` seconds over ``loads`` as the service would, applying each decision."""
    fleet, counts = Fleet(current), []
    for tick, workload in enumerate(loads):
        decision = decide("small", workload, fleet, policy, at(tick * every_s))
        if decision.changes:
            fleet = Fleet(decision.desired, decision.at)
        else:
            fleet = Fleet(fleet.current, fleet.changed_at, decision.surplus)
        counts.append(fleet.current)
    return counts


def test_scale_up_is_immediate_and_capped_at_max() -> None:
    decision = decide("small", Workload(pending=3, running=2), Fleet(1), POLICY, T0)
    assert (decision.need, decision.desired, decision.busy) == (5, 4, 2)
    assert decision.reason == "3 pending + 2 running need 5 workers; capped at max 4: up to 4"


def test_need_counts_runs_per_worker() -> None:
    policy = FleetPolicy(maximum=10, runs_per_worker=3)
    decision = decide("small", Workload(pending=5, running=2), Fleet(0), policy, T0)
    assert (decision.need, decision.desired, decision.busy) == (3, 3, 1)
    assert "at 3 runs each" in decision.reason


def test_minimum_holds_an_idle_class() -> None:
    policy = FleetPolicy(minimum=1, maximum=3)
    up = decide("small", Workload(), Fleet(0), policy, T0)
    assert (up.desired, up.reason) == (1, "queue empty, nothing running; min 1 holds 1: up to 1")
    stay = decide("small", Workload(), Fleet(1, changed_at=at(-3600)), policy, T0)
    assert (stay.desired, stay.changes) == (1, False)


def test_zero_is_allowed_and_an_idle_class_at_zero_stays_there() -> None:
    policy = FleetPolicy(minimum=0, maximum=0)
    decision = decide("small", Workload(pending=2), Fleet(0), policy, T0)
    assert (decision.desired, decision.changes) == (0, False)
    assert decision.reason == "2 pending + 0 running need 2 workers; capped at max 0: stay at 0"
    assert decide("small", Workload(), Fleet(0), POLICY, T0).changes is False


def test_scale_down_waits_for_the_cooldown_then_goes_to_min() -> None:
    counts = run([Workload()] * 8, current=2)  # ticks at 0, 10, ..., 70 s
    assert counts == [2, 2, 2, 2, 2, 2, 0, 0]


def test_the_scale_down_reason_says_how_long_and_why() -> None:
    waiting = decide("small", Workload(), Fleet(2), POLICY, T0)
    assert waiting.reason == (
        "queue empty, nothing running; below 2 for 0 s: stay at 2 for the 60 s cooldown (60 s left)"
    )
    down = decide("small", Workload(), Fleet(2, surplus=waiting.surplus), POLICY, at(120))
    assert down.desired == 0
    assert down.reason == "queue empty, nothing running; below 2 for 120 s: down to min 0 after the 60 s cooldown"


def test_cooldown_also_counts_from_the_last_change() -> None:
    fleet = Fleet(3, changed_at=at(-10), surplus=Surplus(at(-100), peak=1))
    later = decide("small", Workload(running=1), fleet, POLICY, at(45))
    assert later.changes is False
    assert later.reason.endswith("below 3 for 145 s: stay at 3 for the 60 s cooldown (5 s left)")
    assert decide("small", Workload(running=1), fleet, POLICY, at(50)).desired == 1


def test_a_queue_that_refills_within_the_cooldown_never_scales_down() -> None:
    flapping = [Workload(pending=2), Workload(), Workload(), Workload(pending=2)] * 6
    assert run(flapping) == [2] * len(flapping)


def test_scale_down_goes_to_the_peak_need_of_the_window_not_the_last() -> None:
    loads = [Workload(running=4)] + [Workload(running=3), Workload(running=1)] * 4
    # up to 4 at 0 s; the need drops at 10 s; the window's peak need is 3, the last tick's 1
    assert run(loads) == [4] * 7 + [3, 3]


def test_never_below_the_busy_workers() -> None:
    counts = run([Workload(running=3)] * 20, current=4)
    assert counts[-1] == min(counts) == 3


def test_a_maximum_lowered_below_the_count_applies_at_once() -> None:
    decision = decide("small", Workload(pending=9), Fleet(6, changed_at=T0), POLICY, at(1))
    assert decision.desired == 4
    assert decision.reason == "9 pending + 0 running need 9 workers; above max 4: down to it at once"


def test_no_new_worker_for_a_queue_the_current_workers_drain_within_the_horizon() -> None:
    # 2 workers complete 12 trainings in 300 s: 2.4/min, so 1 of the queue starts within 30 s.
    decision = decide("small", Workload(pending=1, running=2, completed=12), Fleet(2), POLICY, T0)
    assert (decision.need, decision.desired) == (3, 2)
    assert decision.reason.endswith(
        "the 2 workers start 1 of the 1 queued within 30 s at 2.4 completions/min: stay at 2"
    )


def test_only_the_backlog_beyond_the_horizon_asks_for_workers() -> None:
    policy = FleetPolicy(maximum=10, rate_window_s=60)
    decision = decide("small", Workload(pending=5, running=2, completed=4), Fleet(2), policy, T0)
    assert (decision.need, decision.desired) == (7, 5)  # 2 of the 5 start within 30 s at 4/min
    assert decision.reason.endswith("start 2 of the 5 queued within 30 s at 4.0 completions/min: up to 5")


def test_a_past_completion_rate_does_not_hold_an_empty_fleet_back() -> None:
    decision = decide("small", Workload(pending=3, completed=100), Fleet(0), POLICY, T0)
    assert decision.desired == 3


def test_a_zero_horizon_ignores_the_completion_rate() -> None:
    policy = FleetPolicy(maximum=4, drain_horizon_s=0)
    decision = decide("small", Workload(pending=1, running=2, completed=100), Fleet(2), policy, T0)
    assert decision.desired == 3


def test_the_decision_carries_what_tenantml_workers_shows() -> None:
    decision = decide("large", Workload(pending=1), Fleet(0), FleetPolicy(minimum=0, maximum=2), T0)
    assert decision == ScalingDecision(
        "large", T0, current=0, desired=1, need=1, busy=0, minimum=0, maximum=2,
        reason="1 pending + 0 running need 1 worker: up to 1",
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: FleetPolicy(minimum=3, maximum=2), "minimum 3 is above maximum 2 workers: lower the minimum"),
        (lambda: FleetPolicy(minimum=-1), "minimum -1 is negative"),
        (lambda: FleetPolicy(maximum=-2), "maximum -2 is negative"),
        (lambda: FleetPolicy(runs_per_worker=0), "runs per worker 0 is below 1"),
        (lambda: FleetPolicy(cooldown_s=-5), "cooldown_s -5 is negative"),
        (lambda: FleetPolicy(rate_window_s=0), "rate_window_s 0 is not positive"),
        (lambda: Workload(pending=-1), "pending -1 is negative"),
        (lambda: Workload(running=-3), "running -3 is negative"),
        (lambda: Fleet(current=-1), "current -1 is negative"),
    ],
)
def test_bad_input_names_the_value(make: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        make()  # type: ignore[operator]
