"""The training instance provisioner's local backend: ``prefect worker`` processes per worker class.

A worker class is where its workers pull flow runs from: training masters from the master pool,
attempts from the training pool's queue named for the class (``small``, ``large``; see
:func:`tenantml.adapters.orchestration.worker_deployment`). :class:`LocalWorkers` starts, drains and
replaces such workers on this machine; it implements the :class:`~tenantml.ports.WorkerFleet` and
:class:`~tenantml.ports.Capacity` ports, as the ECS backend implements the first for the cloud.

- **Up** starts workers (first taking back any that were draining: they are up already).
- **Down** never stops a worker at once. It chooses the workers to remove, idle ones first and the
  newest first among equals (an old worker has proven it starts), and marks them draining: they
  leave :meth:`counts` and :meth:`slots` at once, so the scheduler sends them nothing more. Each is
  stopped by pid only when it is idle (:mod:`tenantml.local.drain`): Prefect's process worker kills
  its flow runs on SIGTERM and leaves them Running (PrefectHQ/prefect#22528), so a busy worker is
  never stopped.
- **A worker that exits by itself** (a crash, a kill from outside) is replaced by :meth:`reap`,
  which the provisioner's loop calls every tick; its training, fenced off, resumes elsewhere
  through the lease. A worker that dies again within :data:`CRASH_LOOP_S` of its start is replaced
  after a backoff that doubles up to :data:`MAX_BACKOFF_S`, so a broken setup does not fork forever.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenantml.domain.request import WorkerClass
from tenantml.errors import InvalidRequest, ServiceUnavailable
from tenantml.local.cgroups import remove_folders, worker_env
from tenantml.local.drain import PrefectQueue, has_children, stop_if_idle
from tenantml.local.processes import Service, start_service, stop_services
from tenantml.settings import FleetSettings, PrefectSettings

__all__ = ["CRASH_LOOP_S", "MASTER", "MAX_BACKOFF_S", "LocalWorkers", "Queue", "Reaped", "create_work_pools", "queues"]

log = logging.getLogger(__name__)

MASTER = "master"
MASTER_RUNS_PER_WORKER = 50  # a master mostly waits on its attempt
CRASH_LOOP_S = 30.0  # a worker that dies sooner than this after its start is crash-looping
MAX_BACKOFF_S = 60.0


@dataclass(frozen=True)
class Queue:
    pool: str
    name: str
    runs_per_worker: int


def queues(settings: PrefectSettings) -> dict[str, Queue]:
    """Each worker class's queue, masters first."""
    found = {MASTER: Queue(settings.master_pool, "default", MASTER_RUNS_PER_WORKER)}
    for worker_class in WorkerClass:
        found[worker_class.value] = Queue(settings.training_pool, worker_class.value, settings.runs_per_worker)
    return found


async def create_work_pools(api_url: str, settings: PrefectSettings, template: dict[str, Any]) -> None:
    """The process pools and their queues, with ``template`` as the pools' base job template."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    from prefect.settings import get_current_settings

    by_class = queues(settings)
    auth = get_current_settings().api.auth_string  # PrefectClient() itself reads none from the settings
    async with PrefectClient(api_url, auth_string=auth.get_secret_value() if auth else None) as client:
        for pool in dict.fromkeys(queue.pool for queue in by_class.values()):
            await client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template), overwrite=True
            )
            await _no_default_queue(client, pool, [q.name for q in by_class.values() if q.pool == pool])
        for queue in by_class.values():
            try:
                await client.create_work_queue(name=queue.name, work_pool_name=queue.pool)
            except ObjectAlreadyExists:  # a restart finds them
                pass


async def _no_default_queue(client: Any, pool: str, wanted: list[str]) -> None:
    """Leave the pool no queue that no worker polls: the UI marks such a queue red ("not ready").

    Prefect gives every pool a ``default`` queue that cannot be deleted. The training pool's is
    renamed to its first class (``small``), so it is polled and stays the pool's default queue; in
    a home made before that, where ``small`` exists beside it, the ``default`` queue is paused.
    """
    names = {queue.name: queue for queue in await client.read_work_queues(work_pool_name=pool)}
    default = names.get("default")
    if default is None or "default" in wanted:
        return
    if wanted[0] not in names:
        await client.update_work_queue(default.id, name=wanted[0], description=f"The {wanted[0]} class's queue.")
    elif not default.is_paused:
        await client.update_work_queue(default.id, is_paused=True,
                                       description=f"Unused: the classes' queues are {', '.join(wanted)}.")


@dataclass
class Worker:
    """One ``prefect worker`` process; ``draining_since`` is set once it is chosen for removal."""

    service: Service
    worker_class: str
    number: int
    started_at: float  # LocalWorkers.clock()
    draining_since: float | None = None

    @property
    def name(self) -> str:
        return self.service.name


@dataclass(frozen=True)
class Reaped:
    """What one :meth:`LocalWorkers.reap` did, by worker name."""

    stopped: tuple[str, ...] = ()  # drained and stopped, idle
    replaced: tuple[str, ...] = ()  # exited by themselves, replaced (or to be, after a backoff)
    draining: tuple[str, ...] = ()  # still busy, or not yet known to be idle

    @property
    def changed(self) -> bool:
        return bool(self.stopped or self.replaced)


@dataclass
class LocalWorkers:
    """Process workers on this machine, named ``worker-<class>-<n>``; numbers are never reused.

    ``claimable(pool, queue)`` counts the runs of a queue that a worker may be about to start (by
    default from the Prefect API in ``env``): a draining worker is stopped only when it is 0.
    """

    settings: PrefectSettings
    env: Mapping[str, str]
    log_dir: Path
    cwd: Path
    fleet: FleetSettings | None = None  # with its provisioner on, each class starts at its minimum
    claimable: Callable[[str, str], int] | None = None
    clock: Callable[[], float] = time.monotonic  # for the crash-loop backoff
    name_prefix: str = ""  # a worker host's name, so that its Prefect workers' names differ from other hosts'
    _workers: dict[str, list[Worker]] = field(default_factory=dict)
    _started: dict[str, int] = field(default_factory=dict)
    _owed: dict[str, int] = field(default_factory=dict)  # replacements waiting for their backoff
    _backoff: dict[str, tuple[int, float]] = field(default_factory=dict)  # class -> (quick deaths, next start)
    restarts: dict[str, int] = field(default_factory=dict)  # workers replaced after exiting by themselves
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        if self.claimable is None and self.env.get("PREFECT_API_URL"):
            self.claimable = PrefectQueue(self.env["PREFECT_API_URL"]).claimable

    def start_configured(self) -> None:
        """One master worker, then each training class's minimum (provisioner on) or fixed count (off)."""
        self.start(MASTER, 1)
        for worker_class, count in self.initial_counts().items():
            self.start(worker_class, count)

    def initial_counts(self) -> dict[str, int]:
        if self.fleet is not None and self.fleet.provisioner:
            return {worker_class.value: self.fleet.bounds(worker_class.value)[0] for worker_class in WorkerClass}
        return {WorkerClass.SMALL.value: self.settings.small_workers, WorkerClass.LARGE.value: self.settings.large_workers}

    def start(self, worker_class: str, count: int) -> list[Service]:
        """Start ``count`` more workers of ``worker_class``; returns them."""
        queue = self._queue(worker_class)
        started = []
        with self._lock:
            for _ in range(count):
                self._started[worker_class] = number = self._started.get(worker_class, 0) + 1
                name = f"{self.name_prefix}{worker_class}-{number}"
                command = [
                    str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", queue.pool,
                    "--work-queue", queue.name, "--type", "process", "--limit", str(queue.runs_per_worker),
                    "--name", name, "--install-policy", "never",
                ]
                limit = getattr(self.settings, f"{worker_class}_memory_mb", None)  # the runs' cgroup, if limited
                env = {**self.env, **worker_env(self.env, worker_class, limit)}
                service = start_service(f"worker-{name}", command, env, self.log_dir, self.cwd)
                self._workers.setdefault(worker_class, []).append(Worker(service, worker_class, number, self.clock()))
                started.append(service)
        return started

    # -- the WorkerFleet and Capacity ports ------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Workers of each class taking runs, or owed a replacement; draining ones are not counted."""
        with self._lock:
            return {worker_class: len(self._taking(worker_class)) + self._owed.get(worker_class, 0)
                    for worker_class in queues(self.settings)}

    def slots(self) -> dict[str, int]:
        """Per training class: runs its workers that take runs can hold at once (draining ones excluded),
        and those of the workers on other hosts the settings declare (this process cannot see them)."""
        remote = {WorkerClass.SMALL.value: self.settings.remote_small_workers,
                  WorkerClass.LARGE.value: self.settings.remote_large_workers}
        with self._lock:
            return {worker_class.value: (len(self._taking(worker_class.value)) + remote[worker_class.value])
                    * self.settings.runs_per_worker for worker_class in WorkerClass}

    def scale(self, worker_class: str, desired: int) -> None:
        """Make ``desired`` workers of the class take runs: start some, or drain some (see the module's docstring)."""
        self._queue(worker_class)
        if desired < 0:
            raise InvalidRequest(f"desired count {desired} for {worker_class!r} is negative: give 0 or more")
        with self._lock:
            taking = self._taking(worker_class)
            owed = self._owed.get(worker_class, 0)
            missing = desired - len(taking) - owed
            if missing > 0:
                draining = sorted(self._draining(worker_class), key=lambda w: w.number, reverse=True)
                for worker in draining[:missing]:  # up already: the cheapest way up
                    worker.draining_since = None
                    log.info("%s takes runs again", worker.name)
                self.start(worker_class, missing - min(missing, len(draining)))
                return
            surplus = -missing
            cancelled = min(surplus, owed)
            self._owed[worker_class] = owed - cancelled
            surplus -= cancelled
            if surplus <= 0:
                return
            now = self.clock()
            for worker in sorted(taking, key=lambda w: (has_children(w.service.pid), -w.number))[:surplus]:
                worker.draining_since = now
                log.info("%s is draining: it takes no new runs and stops once idle", worker.name)

    # -- every tick --------------------------------------------------------------------------
    def reap(self) -> Reaped:
        """Replace workers that exited by themselves; stop draining workers that are idle.

        A draining worker is stopped only when the Prefect API says no run of its queue is about to
        start; ServiceUnavailable (after the rest is done) when it did not answer.
        """
        replaced, stopped, draining = [], [], []
        with self._lock:
            for worker_class, workers in self._workers.items():
                for worker in [w for w in workers if not w.service.alive()]:
                    workers.remove(worker)
                    if worker.draining_since is not None:
                        stopped.append(worker.name)  # it was leaving anyway
                        continue
                    replaced.append(worker.name)
                    self.restarts[worker_class] = self.restarts.get(worker_class, 0) + 1
                    self._owed[worker_class] = self._owed.get(worker_class, 0) + 1
                    self._note_death(worker)
                    log.warning("%s exited by itself with code %s; see %s", worker.name,
                                worker.service.process.returncode, worker.service.log_path)
            self._start_owed()
            candidates = [w for workers in self._workers.values() for w in workers if w.draining_since is not None]
        unavailable: ServiceUnavailable | None = None
        for worker in candidates:
            try:
                done = self._stop_if_idle(worker)
            except ServiceUnavailable as err:
                unavailable, done = err, False
            with self._lock:
                if done and worker in self._workers.get(worker.worker_class, []):
                    self._workers[worker.worker_class].remove(worker)
                    stopped.append(worker.name)
                elif worker.draining_since is not None:
                    draining.append(worker.name)
        if unavailable is not None:
            raise unavailable
        return Reaped(tuple(stopped), tuple(replaced), tuple(draining))

    def stop_all(self) -> None:
        """Every worker at once, so that none starts a new run while another is stopping."""
        with self._lock:
            stop_services(self.services)
            self._workers.clear()
            self._owed.clear()
            if "TENANTML_HOME" in self.env:  # the classes' run cgroups, if any: their runs are gone
                remove_folders(Path(self.env["TENANTML_HOME"]))

    @property
    def services(self) -> list[Service]:
        with self._lock:
            return [worker.service for workers in self._workers.values() for worker in workers]

    def services_of(self, worker_class: str) -> list[Service]:
        """The class's workers, draining ones included, oldest first."""
        with self._lock:
            return [worker.service for worker in self._workers.get(worker_class, [])]

    def draining(self) -> dict[str, list[str]]:
        """The names of each class's draining workers."""
        with self._lock:
            return {worker_class: [w.name for w in self._draining(worker_class)] for worker_class in self._workers}

    # -- internals ---------------------------------------------------------------------------
    def _taking(self, worker_class: str) -> list[Worker]:
        return [w for w in self._workers.get(worker_class, []) if w.draining_since is None]

    def _draining(self, worker_class: str) -> list[Worker]:
        return [w for w in self._workers.get(worker_class, []) if w.draining_since is not None]

    def _stop_if_idle(self, worker: Worker) -> bool:
        if self.claimable is None:  # no Prefect API to ask: only a worker without children is known idle
            return stop_if_idle(worker.service, 0, lambda: 0)
        queue = self._queue(worker.worker_class)
        claimable = self.claimable
        return stop_if_idle(worker.service, claimable(queue.pool, queue.name), lambda: claimable(queue.pool, queue.name))

    def _note_death(self, worker: Worker) -> None:
        quick, _ = self._backoff.get(worker.worker_class, (0, 0.0))
        if self.clock() - worker.started_at >= CRASH_LOOP_S:
            self._backoff.pop(worker.worker_class, None)
            return
        delay = 0.0 if quick == 0 else min(2.0 ** quick, MAX_BACKOFF_S)  # the first one is replaced at once
        self._backoff[worker.worker_class] = (quick + 1, self.clock() + delay)
        if delay:
            log.warning("%s died %.0f s after its start: the next %s worker starts in %.0f s",
                        worker.name, self.clock() - worker.started_at, worker.worker_class, delay)

    def _start_owed(self) -> None:
        now = self.clock()
        for worker_class, owed in list(self._owed.items()):
            _, next_start = self._backoff.get(worker_class, (0, 0.0))
            if owed and now >= next_start:
                self.start(worker_class, owed)
                self._owed[worker_class] = 0

    def _queue(self, worker_class: str) -> Queue:
        by_class = queues(self.settings)
        if worker_class not in by_class:
            raise InvalidRequest(f"unknown worker class {worker_class!r}: choose one of {', '.join(by_class)}")
        return by_class[worker_class]
