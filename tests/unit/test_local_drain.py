"""The local fleet's drain and replacement, on stand-in worker processes: which workers drain, that a
busy one is never stopped, that a draining one is taken back before a new one starts, that a worker
that dies is replaced (with a backoff when it keeps dying), and what counts and slots say meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from tenantml.errors import InvalidRequest, ServiceUnavailable
from tenantml.local import drain, workers as workers_module
from tenantml.local.drain import has_children, stop_if_idle
from tenantml.local.processes import Service, start_service, stop_services
from tenantml.local.workers import CRASH_LOOP_S, LocalWorkers
from tenantml.settings import load_settings
from tests.support.waiting import wait_for

IDLE = "import time; time.sleep(600)"
BUSY = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def busy_names() -> set[str]:
    """Names of the stand-in workers started busy (with a child process, as a worker with a flow run)."""
    return set()


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busy_names: set[str]) -> Iterator[LocalWorkers]:
    def stand_in(name: str, command: Sequence[str], env: Mapping[str, str], log_dir: Path, cwd: Path) -> Service:
        assert "prefect" in command[0] and "--work-queue" in command
        return start_service(name, [sys.executable, "-c", BUSY if name in busy_names else IDLE], env, log_dir, cwd)

    monkeypatch.setattr(workers_module, "start_service", stand_in)
    settings = load_settings(home=tmp_path, fleet={"small_min": 1, "small_max": 3})
    found = LocalWorkers(settings.prefect, {"PATH": os.environ["PATH"]}, tmp_path, tmp_path, fleet=settings.fleet,
                         claimable=lambda pool, queue: 0, clock=Clock())
    try:
        yield found
    finally:
        found.stop_all()


def names(fleet: LocalWorkers, worker_class: str = "small") -> list[str]:
    return [service.name for service in fleet.services_of(worker_class)]


def wait_busy(fleet: LocalWorkers, busy: set[str]) -> None:
    """Until every stand-in started busy has its child (a busy worker is one with a child process)."""
    wait_for(lambda: all(has_children(s.pid) for s in fleet.services if s.name in busy), 30,
             f"{sorted(busy)} to start their children")


def wait_ended(child: psutil.Process) -> None:
    """Until the killed child is gone or a zombie (its parent, a stand-in, never reaps it)."""
    def ended() -> bool:
        try:
            return child.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(ended, 10, f"pid {child.pid} to end")


def test_the_provisioner_starts_each_class_at_its_minimum_and_the_master_once(fleet: LocalWorkers) -> None:
    fleet.start_configured()
    assert fleet.counts() == {"master": 1, "small": 1, "large": 0}
    assert fleet.slots() == {"small": 1, "large": 0}  # the master's pool is not the scheduler's


def test_the_fixed_counts_apply_with_the_provisioner_off(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, fleet={"provisioner": False}, prefect={"small_workers": 3,
                                                                                   "large_workers": 0})
    assert LocalWorkers(settings.prefect, {}, tmp_path, tmp_path, fleet=settings.fleet).initial_counts() == {
        "small": 3, "large": 0}


def test_scale_down_drains_idle_workers_first_newest_first_and_keeps_the_busy_one(
    fleet: LocalWorkers, busy_names: set[str]
) -> None:
    busy_names.add("worker-small-2")
    fleet.scale("small", 3)
    wait_busy(fleet, busy_names)
    fleet.scale("small", 1)
    assert fleet.draining()["small"] == ["worker-small-1", "worker-small-3"]  # the idle ones; the busy one stays
    assert fleet.counts()["small"] == 1 and fleet.slots()["small"] == 1  # at once, before any stops
    reaped = fleet.reap()
    assert set(reaped.stopped) == {"worker-small-1", "worker-small-3"}
    assert names(fleet) == ["worker-small-2"]


def test_a_busy_draining_worker_is_not_stopped_until_its_runs_end(fleet: LocalWorkers, busy_names: set[str]) -> None:
    busy_names.add("worker-small-1")
    fleet.scale("small", 1)
    wait_busy(fleet, busy_names)
    (worker,) = fleet.services_of("small")
    fleet.scale("small", 0)
    assert fleet.slots()["small"] == 0
    for _ in range(3):
        assert fleet.reap().draining == ("worker-small-1",)
    assert worker.alive() and psutil.Process(worker.pid).status() != psutil.STATUS_STOPPED  # not left frozen
    for child in psutil.Process(worker.pid).children():  # its run ends
        child.kill()
        wait_ended(child)
    assert fleet.reap().stopped == ("worker-small-1",)
    assert not worker.alive()


def test_a_draining_worker_is_not_stopped_while_a_run_of_its_queue_may_be_starting(fleet: LocalWorkers) -> None:
    waiting = {"count": 1}
    fleet.claimable = lambda pool, queue: waiting["count"]
    fleet.scale("small", 1)
    fleet.scale("small", 0)
    assert fleet.reap().draining == ("worker-small-1",)
    waiting["count"] = 0
    assert fleet.reap().stopped == ("worker-small-1",)


def test_a_prefect_api_that_does_not_answer_stops_no_worker(fleet: LocalWorkers) -> None:
    def down(pool: str, queue: str) -> int:
        raise ServiceUnavailable("the Prefect API did not answer")

    fleet.claimable = down
    fleet.scale("small", 1)
    (worker,) = fleet.services_of("small")
    fleet.scale("small", 0)
    with pytest.raises(ServiceUnavailable):
        fleet.reap()
    assert worker.alive() and fleet.draining()["small"] == ["worker-small-1"]


def test_scale_up_takes_back_draining_workers_before_starting_new_ones(fleet: LocalWorkers) -> None:
    fleet.claimable = lambda pool, queue: 1  # nothing may stop: they stay draining
    fleet.scale("small", 2)
    fleet.scale("small", 0)
    fleet.scale("small", 3)
    assert names(fleet) == ["worker-small-1", "worker-small-2", "worker-small-3"]
    assert fleet.draining()["small"] == [] and fleet.counts()["small"] == 3


def test_a_worker_that_exits_by_itself_is_replaced_and_counted(fleet: LocalWorkers) -> None:
    fleet.scale("small", 2)
    victim = fleet.services_of("small")[0]
    fleet.clock.now += CRASH_LOOP_S  # type: ignore[attr-defined]  # it ran a while
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.wait(10)
    assert fleet.reap().replaced == ("worker-small-1",)
    assert names(fleet) == ["worker-small-2", "worker-small-3"]
    assert fleet.restarts == {"small": 1} and fleet.counts()["small"] == 2


def test_a_worker_that_keeps_dying_at_start_is_replaced_after_a_growing_backoff(fleet: LocalWorkers) -> None:
    clock: Clock = fleet.clock  # type: ignore[assignment]
    fleet.scale("small", 1)
    for expected in ("worker-small-2", "worker-small-3"):  # the first quick death is replaced at once...
        (worker,) = fleet.services_of("small")
        worker.process.kill()
        worker.process.wait(10)
        fleet.reap()
        if expected == "worker-small-3":
            assert names(fleet) == [] and fleet.counts()["small"] == 1  # ...the next waits, still counted
            assert fleet.slots()["small"] == 0
            clock.now += 2.0
            fleet.reap()
        assert names(fleet) == [expected]
    assert fleet.restarts == {"small": 2}


def test_a_scale_down_cancels_a_replacement_still_waiting_for_its_backoff(fleet: LocalWorkers) -> None:
    fleet.scale("small", 1)
    for _ in range(2):
        (worker,) = fleet.services_of("small")
        worker.process.kill()
        worker.process.wait(10)
        fleet.reap()
    assert fleet.counts()["small"] == 1 and names(fleet) == []
    fleet.scale("small", 0)
    assert fleet.counts()["small"] == 0
    fleet.clock.now += 60  # type: ignore[attr-defined]
    fleet.reap()
    assert names(fleet) == []


def test_scale_refuses_an_unknown_class_and_a_negative_count(fleet: LocalWorkers) -> None:
    with pytest.raises(InvalidRequest, match="unknown worker class 'huge'"):
        fleet.scale("huge", 1)
    with pytest.raises(InvalidRequest, match="desired count -1 for 'small' is negative"):
        fleet.scale("small", -1)


# -- the idle check itself -------------------------------------------------------------------
@pytest.fixture
def process(tmp_path: Path) -> Iterator[Service]:
    service = start_service("stand-in", [sys.executable, "-c", IDLE], {}, tmp_path, tmp_path)
    try:
        yield service
    finally:
        stop_services([service])


def test_an_idle_process_is_stopped_and_a_recheck_that_fails_leaves_it_running(process: Service) -> None:
    def down() -> int:
        raise ServiceUnavailable("no answer")

    with pytest.raises(ServiceUnavailable):
        stop_if_idle(process, 0, down)
    assert process.alive() and psutil.Process(process.pid).status() != psutil.STATUS_STOPPED
    assert not stop_if_idle(process, 0, lambda: 1)  # a run appeared while it was frozen
    assert process.alive() and psutil.Process(process.pid).status() != psutil.STATUS_STOPPED
    assert stop_if_idle(process, 0, lambda: 0)
    assert not process.alive()


def test_a_process_with_a_child_is_busy_and_one_whose_child_ended_is_not(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               "c = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], "
                               "stdin=subprocess.PIPE); print(c.pid, flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        assert has_children(parent.pid)
        assert not stop_if_idle(Service("busy", parent, tmp_path / "log"), 0, lambda: 0)
        child.kill()
        wait_ended(child)  # a zombie until its parent reaps it: the run has ended
        assert not has_children(parent.pid)
    finally:
        parent.kill()
        parent.wait(10)


def test_runs_that_a_worker_may_be_about_to_start_are_fresh_pending_and_due_scheduled_ones() -> None:
    now = datetime.now(UTC)

    def run(state: str, **times: datetime) -> dict[str, object]:
        found: dict[str, object] = {"state": {"type": state, "timestamp": times.get("since", now).isoformat()}}
        if "due" in times:
            found["next_scheduled_start_time"] = times["due"].isoformat()
        return found

    assert drain._claimable(run("PENDING"), now)
    assert not drain._claimable(run("PENDING", since=now - timedelta(seconds=drain.PENDING_FRESH_S + 1)), now)
    assert drain._claimable(run("SCHEDULED", due=now + timedelta(seconds=5)), now)
    assert drain._claimable(run("SCHEDULED", due=now - timedelta(hours=1)), now)  # late: any poll takes it
    assert not drain._claimable(run("SCHEDULED", due=now + timedelta(hours=1)), now)
