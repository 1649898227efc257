"""The training instance provisioner's local backend: ``prefect worker`` processes per worker class.

A worker class is where its workers pull flow runs from: training masters from the master pool,
attempts from the training pool's queue named for the class (``small``, ``large``; see
:func:`tenantml.adapters.orchestration.worker_deployment`). :class:`LocalWorkers` starts and stops
such workers on this machine; a provisioner for the cloud drives the same three calls.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenantml.domain.request import WorkerClass
from tenantml.errors import InvalidRequest
from tenantml.local.processes import Service, start_service, stop_services
from tenantml.settings import PrefectSettings

__all__ = ["MASTER", "LocalWorkers", "Queue", "create_work_pools", "queues"]

MASTER = "master"
MASTER_RUNS_PER_WORKER = 50  # a master mostly waits on its attempt


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

    by_class = queues(settings)
    async with PrefectClient(api_url) as client:
        for pool in dict.fromkeys(queue.pool for queue in by_class.values()):
            await client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template), overwrite=True
            )
        for queue in by_class.values():
            try:
                await client.create_work_queue(name=queue.name, work_pool_name=queue.pool)
            except ObjectAlreadyExists:  # every pool has its "default" queue; a restart finds the others
                pass


@dataclass
class LocalWorkers:
    """Process workers on this machine, named ``worker-<class>-<n>``; numbers are never reused."""

    settings: PrefectSettings
    env: Mapping[str, str]
    log_dir: Path
    cwd: Path
    _running: dict[str, list[Service]] = field(default_factory=dict)
    _started: dict[str, int] = field(default_factory=dict)

    def start_configured(self) -> None:
        """One master worker, then as many of each training class as the settings ask for."""
        self.start(MASTER, 1)
        self.start(WorkerClass.SMALL.value, self.settings.small_workers)
        self.start(WorkerClass.LARGE.value, self.settings.large_workers)

    def start(self, worker_class: str, count: int) -> list[Service]:
        """Start ``count`` more workers of ``worker_class``; returns them."""
        queue = self._queue(worker_class)
        started = []
        for _ in range(count):
            self._started[worker_class] = number = self._started.get(worker_class, 0) + 1
            name = f"{worker_class}-{number}"
            command = [
                str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", queue.pool,
                "--work-queue", queue.name, "--type", "process", "--limit", str(queue.runs_per_worker),
                "--name", name, "--install-policy", "never",
            ]
            service = start_service(f"worker-{name}", command, self.env, self.log_dir, self.cwd)
            self._running.setdefault(worker_class, []).append(service)
            started.append(service)
        return started

    def stop(self, worker_class: str, count: int | None = None) -> None:
        """Stop the newest ``count`` workers of ``worker_class`` (all of them if None), by pid."""
        self._queue(worker_class)  # refuse an unknown class
        running = self._running.get(worker_class, [])
        keep = 0 if count is None else max(0, len(running) - count)
        stop_services(running[keep:])
        del running[keep:]

    def stop_all(self) -> None:
        """Every worker at once, so that none starts a new run while another is stopping."""
        stop_services(self.services)
        self._running.clear()

    def counts(self) -> dict[str, int]:
        """How many workers of each class this runs (started and not stopped)."""
        return {worker_class: len(self._running.get(worker_class, [])) for worker_class in queues(self.settings)}

    @property
    def services(self) -> list[Service]:
        return [service for running in self._running.values() for service in running]

    def _queue(self, worker_class: str) -> Queue:
        by_class = queues(self.settings)
        if worker_class not in by_class:
            raise InvalidRequest(f"unknown worker class {worker_class!r}: choose one of {', '.join(by_class)}")
        return by_class[worker_class]
