"""The keeper on small real processes: restart after an exit, the record of it, the backoff, the stop."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil

from tenantml.errors import PlatformError
from tenantml.local.keeper import MAX_BACKOFF_S, Exit, Keeper, backoff_s
from tenantml.local.processes import Service, start_service, stop_services
from tests.support.waiting import wait_for

# A child that starts a session of its own and outlives its parent, as BentoML's workers do.
PAUSE = "import signal; signal.pause()"
WITH_ORPHAN = ("import os, signal, subprocess, sys; "
               "subprocess.Popen([sys.executable, '-c', 'import os, signal; os.setsid(); signal.pause()']); "
               "signal.pause()")


def _starter(tmp_path: Path, code: str = PAUSE) -> tuple[list[Service], object]:
    started: list[Service] = []

    def start() -> Service:
        service = start_service("toy", [sys.executable, "-c", code], os.environ, tmp_path, tmp_path)
        started.append(service)
        return service

    return started, start


def test_backoff_doubles_from_one_second_up_to_its_cap() -> None:
    assert [backoff_s(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_s(50) == MAX_BACKOFF_S


def test_an_exit_is_a_signal_name_or_a_code() -> None:
    assert Exit.of(-signal.SIGKILL, 1.0) == Exit(None, "SIGKILL", 1.0)
    assert Exit.of(3, 2.0).describe() == "exit code 3"


def test_a_killed_service_is_started_again_and_its_orphans_are_killed(tmp_path: Path) -> None:
    started, start = _starter(tmp_path, WITH_ORPHAN)
    keeper = Keeper()
    first = start()  # type: ignore[operator]
    orphan = wait_for(lambda: psutil.Process(first.pid).children(), 30, "the child to start")[0]
    keeper.keep(first, start, lambda service: None)  # type: ignore[arg-type]
    keeper.start()
    try:
        wait_for(lambda: _seen_family(keeper), 30, "the keeper to list the service's children")
        os.kill(first.pid, signal.SIGKILL)
        record = wait_for(lambda: (r := keeper.records()["toy"]).restarts == 1 and not r.restarting and r, 30,
                          "the restart")
        assert record.pid == started[-1].pid != first.pid
        assert record.last_exit is not None and record.last_exit.signal == "SIGKILL"
        assert record.up_since is not None and record.up_since >= record.last_exit.at
        assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
    finally:
        stop_services(keeper.stop())
        keeper.join()


def _seen_family(keeper: Keeper) -> bool:
    return any(kept.family for kept in keeper._kept)  # noqa: SLF001 - what the keeper knows of the children


def test_a_restart_that_never_gets_healthy_is_stopped_and_tried_again(tmp_path: Path) -> None:
    started, start = _starter(tmp_path)
    verdicts = iter([False, True])

    def ready(service: Service) -> None:
        if not next(verdicts, True):
            raise PlatformError("not healthy")

    keeper = Keeper()
    keeper.keep(start(), start, ready)  # type: ignore[operator, arg-type]
    keeper.start()
    try:
        os.kill(started[0].pid, signal.SIGKILL)
        record = wait_for(lambda: (r := keeper.records()["toy"]).restarts == 2 and not r.restarting and r, 30,
                          "the second restart")
        assert not started[1].alive()  # the unhealthy one was stopped
        assert started[2].alive() and record.pid == started[2].pid
    finally:
        stop_services(keeper.stop())
        keeper.join()


def test_nothing_is_restarted_once_the_keeper_stops(tmp_path: Path) -> None:
    started, start = _starter(tmp_path)
    keeper = Keeper()
    keeper.keep(start(), start, lambda service: None)  # type: ignore[operator, arg-type]
    keeper.start()
    stop_services(keeper.stop())
    keeper.join()
    assert len(started) == 1 and not started[0].alive()
    assert keeper.records()["toy"].restarts == 0
