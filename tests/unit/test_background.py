"""The background sender: in order, newest progress wins, failures and overflow never reach the caller."""

from __future__ import annotations

import threading

from tenantml.services.background import BackgroundSender


def test_calls_run_in_the_order_they_were_handed_over() -> None:
    sender, seen = BackgroundSender(), []
    for number in range(50):
        sender.submit(f"call {number}", lambda number=number: seen.append(number))
    assert sender.close(timeout_s=10)
    assert seen == list(range(50))


def test_a_keyed_call_replaces_the_pending_one_with_its_key() -> None:
    gate, seen = threading.Event(), []
    sender = BackgroundSender()
    sender.submit("blocker", gate.wait)
    for percent in (10, 20, 30):
        sender.submit("progress", lambda percent=percent: seen.append(percent), key="progress")
    sender.submit("mirror", lambda: seen.append("mirror"))
    gate.set()
    assert sender.close(timeout_s=10)
    assert seen == [30, "mirror"]


def test_a_failing_call_is_counted_and_the_next_one_still_runs() -> None:
    sender, seen = BackgroundSender(), []

    def broken() -> None:
        raise ConnectionError("MLflow is down")

    sender.submit("mirror", broken)
    sender.submit("progress", lambda: seen.append("ran"))
    assert sender.close(timeout_s=10)
    assert (sender.failed, seen) == (1, ["ran"])


def test_past_its_capacity_the_oldest_pending_call_is_dropped() -> None:
    gate, started, seen = threading.Event(), threading.Event(), []
    sender = BackgroundSender(capacity=2)
    sender.submit("blocker", lambda: (started.set(), gate.wait()))
    assert started.wait(timeout=10)  # the blocker is running, nothing is pending
    for number in range(4):
        sender.submit(f"call {number}", lambda number=number: seen.append(number))
    gate.set()
    assert sender.close(timeout_s=10)
    assert (seen, sender.dropped) == ([2, 3], 2)


def test_a_slow_call_does_not_hold_up_the_caller() -> None:
    gate = threading.Event()
    sender = BackgroundSender()
    sender.submit("slow mirror", gate.wait)
    assert not sender.flush(timeout_s=0.2)  # still running: the caller was not made to wait for it
    gate.set()
    assert sender.close(timeout_s=10)
