"""Supervised services: ``tenantml up`` restarts a server that exits, with backoff, and records it.

Each server the platform starts (the Prefect and MLflow servers, the fork server, the inference
service, the tenant API) is *kept*: a thread polls it, and when it exits while the platform is not
stopping, the keeper

1. records the exit (its code, or the signal's name, and when),
2. kills whatever the dead process left behind, and waits until it is gone: its children as last
   seen and anything in its session (a child still holding the port, as BentoML's workers do, which
   start sessions of their own; the flow runs of a dead fork server, whose launchers have exited and
   whose attempts the supervisor fails over anyway),
3. waits a backoff, starts the same command again, on the same port with the same environment
   (clients keep their URL: a Prefect or MLflow client just sees a few refused connections), and
4. waits for its health check.

The backoff doubles with each exit in a row (1 s, 2 s, 4 s ... up to :data:`MAX_BACKOFF_S`); a service
that stayed up :data:`STABLE_S` before it exited starts the count again. A restart that never gets
healthy is stopped and counts as another exit. Workers are not kept here: the provisioner's loop
(:mod:`tenantml.local.fleet`) replaces a worker that exits, and the platform reports its counts
beside these.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from tenantml.errors import PlatformError
from tenantml.local.processes import Service, stop_services

__all__ = ["BASE_BACKOFF_S", "MAX_BACKOFF_S", "STABLE_S", "Exit", "Keeper", "ServiceRecord", "backoff_s"]

log = logging.getLogger(__name__)

BASE_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_S = 60.0  # up this long before it exited: the next restart waits BASE_BACKOFF_S again
POLL_S = 0.25
FAMILY_S = 2.0  # how often a service's children are listed: BentoML's leave its session, and outlive it


def backoff_s(exits_in_a_row: int) -> float:
    """How long to wait before the restart that follows the n-th exit in a row (n >= 1)."""
    return min(BASE_BACKOFF_S * 2 ** (max(exits_in_a_row, 1) - 1), MAX_BACKOFF_S)


@dataclass(frozen=True)
class Exit:
    """How a process ended: its exit code, or the signal that killed it; ``at`` in seconds since the epoch."""

    code: int | None
    signal: str | None
    at: float

    @classmethod
    def of(cls, returncode: int | None, at: float) -> Exit:
        if returncode is not None and returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            return cls(None, name, at)
        return cls(returncode, None, at)

    def describe(self) -> str:
        return self.signal if self.signal else f"exit code {self.code}"


@dataclass
class ServiceRecord:
    """What ``tenantml status`` shows of one kept service."""

    name: str
    pid: int
    up_since: float | None  # seconds since the epoch; None while it is being restarted
    restarts: int = 0
    last_exit: Exit | None = None
    restarting: bool = False

    def to_dict(self) -> dict[str, Any]:
        exit_ = self.last_exit
        return {
            "pid": self.pid,
            "restarts": self.restarts,
            "up_since": self.up_since,
            "restarting": self.restarting,
            "last_exit": None if exit_ is None else {"code": exit_.code, "signal": exit_.signal, "at": exit_.at},
        }


@dataclass
class _Kept:
    service: Service
    start: Callable[[], Service]  # the same command again; returns at once
    ready: Callable[[Service], None]  # waits for its health; PlatformError if it never gets there
    record: ServiceRecord
    started: float  # monotonic
    exits_in_a_row: int = 0
    family: list[psutil.Process] = field(default_factory=list)  # its children, as last seen
    seen_at: float = 0.0  # monotonic


@dataclass
class Keeper:
    """Keeps services running; ``on_change`` is called (from the keeper's threads) after each exit and restart."""

    on_change: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.time
    _kept: list[_Kept] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _watching: bool = False

    def keep(self, service: Service, start: Callable[[], Service], ready: Callable[[Service], None]) -> None:
        """Watch ``service`` (once :meth:`start` runs): restart it with ``start``, healthy when ``ready`` returns."""
        record = ServiceRecord(service.name, service.pid, self.clock())
        with self._lock:
            kept = _Kept(service, start, ready, record, time.monotonic())
            self._kept.append(kept)
            watching = self._watching
        if watching:
            self._watch(kept)

    @property
    def services(self) -> list[Service]:
        """The current process of each kept service, in the order they were kept."""
        with self._lock:
            return [kept.service for kept in self._kept]

    def records(self) -> dict[str, ServiceRecord]:
        with self._lock:
            return {kept.record.name: ServiceRecord(**vars(kept.record)) for kept in self._kept}

    def start(self) -> Keeper:
        with self._lock:
            kept, self._watching = list(self._kept), True  # kept from now on are watched at once
        for one in kept:
            self._watch(one)
        return self

    def stop(self) -> list[Service]:
        """No restart from now on; returns the current processes, for the caller to stop."""
        self._stopping.set()
        with self._lock:
            return [kept.service for kept in self._kept]

    def join(self, timeout_s: float = 10.0) -> None:
        """Wait for the watching threads (after their services were stopped)."""
        end = time.monotonic() + timeout_s
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(max(end - time.monotonic(), 0.0))

    # -- internals ---------------------------------------------------------------------------
    def _watch(self, kept: _Kept) -> None:
        thread = threading.Thread(target=self._run, args=(kept,), name=f"keeper-{kept.record.name}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _run(self, kept: _Kept) -> None:
        while not self._stopping.wait(POLL_S):
            if kept.service.alive():
                if time.monotonic() - kept.seen_at >= FAMILY_S:
                    kept.family, kept.seen_at = _children(kept.service.pid), time.monotonic()
                continue
            self._exited(kept)
            while not self._stopping.is_set() and not self._restart(kept):
                pass

    def _exited(self, kept: _Kept) -> None:
        """Note the exit of ``kept.service`` and clear what it left behind."""
        service = kept.service
        exit_ = Exit.of(service.process.returncode, self.clock())
        up_for = time.monotonic() - kept.started
        kept.exits_in_a_row = 1 if up_for >= STABLE_S else kept.exits_in_a_row + 1
        with self._lock:
            kept.record.last_exit, kept.record.up_since, kept.record.restarting = exit_, None, True
        log.warning("%s (pid %s) exited (%s) after %.0f s; restarting it in %.0f s; see %s", service.name,
                    service.pid, exit_.describe(), up_for, backoff_s(kept.exits_in_a_row), service.log_path)
        _clear(service.pid, kept.family)
        kept.family = []
        self.on_change()

    def _restart(self, kept: _Kept) -> bool:
        """One restart after the backoff: True once healthy (or stopping), False if it must be tried again."""
        if self._stopping.wait(backoff_s(kept.exits_in_a_row)):
            return True
        with self._lock:  # stop() sees the new process, or this sees the stop: never a process left behind
            if self._stopping.is_set():
                return True
            try:
                service = kept.start()
            except Exception as err:  # a port taken meanwhile, a file gone: try again after a longer wait
                kept.exits_in_a_row += 1
                log.warning("%s could not be started again: %s", kept.record.name, err)
                return False
            kept.service, kept.started = service, time.monotonic()
            kept.record.pid, kept.record.restarts = service.pid, kept.record.restarts + 1
        try:
            kept.ready(service)
        except PlatformError as err:
            if self._stopping.is_set():
                return True
            stop_services([service])
            kept.exits_in_a_row += 1
            with self._lock:
                kept.record.last_exit = Exit.of(service.process.returncode, self.clock())
            log.warning("%s did not get healthy after a restart: %s", kept.record.name, err)
            self.on_change()
            return False
        with self._lock:
            kept.record.up_since, kept.record.restarting = self.clock(), False
        log.warning("%s is up again (pid %s, restart %d)", kept.record.name, service.pid, kept.record.restarts)
        self.on_change()
        return True


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _clear(pid: int, family: list[psutil.Process], grace_s: float = 10.0) -> None:
    """SIGKILL what is left of a dead service, and wait until it is gone: its children as last seen (psutil
    checks that each is still the same process), and anything else in its session (it led its own)."""
    doomed = {proc.pid: proc for proc in family}
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == pid:
                doomed.setdefault(proc.pid, proc)
        except (ProcessLookupError, PermissionError):
            continue
    left = []
    for proc in doomed.values():
        try:
            if proc.is_running():
                proc.kill()
                left.append(proc)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(left, timeout=grace_s)
