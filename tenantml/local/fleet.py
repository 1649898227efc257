"""The provisioner's loop on the local platform: every interval, reap, decide, scale, record, announce.

A pass (:meth:`FleetLoop.tick`) does, in order:

1. asks the Prefect API for its health: a worker cannot poll an API that does not answer, so
   without it nothing changes (no worker is replaced or stopped);
2. :meth:`LocalWorkers.reap`: replaces workers that exited by themselves, stops the draining ones
   that are idle;
3. :meth:`Provisioner.tick`: reads the workload from the training metadata and scales each class
   (a database that does not answer raises before any scale call);
4. writes each class's decision to ``fleet_decisions`` (``tenantml workers`` reads it);
5. sends a ``tenantml.fleet.scaled`` Prefect event for each decision that changed a count, and for
   each class's first decision, so the event feed shows the fleet from the platform's start.

A pass that fails is logged as a warning and the next one waits twice as long, up to
:data:`MAX_BACKOFF_S`; the first pass that succeeds again says so and goes back to the interval.

With the provisioner off (``TENANTML_FLEET__PROVISIONER=false``) the same loop runs with each class's
minimum and maximum both at its fixed count: nothing is scaled, but a worker that dies is still
replaced and ``tenantml workers`` still shows the fleet.

Events go out through Prefect's events client at the platform's API URL, not through
``prefect.events.emit_event``: that one sends from a background worker that reads
``PREFECT_API_URL`` from the process's settings, which ``tenantml up``'s own process does not have
(its children get it in their environment).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tenantml.adapters.fleet_records import FleetRecord, FleetRecords
from tenantml.domain.provisioning import FleetPolicy, ScalingDecision
from tenantml.domain.request import WorkerClass
from tenantml.errors import ServiceUnavailable
from tenantml.local.state import read_state, write_state
from tenantml.local.workers import LocalWorkers, queues
from tenantml.ports import WorkloadReader
from tenantml.services.provisioner import Provisioner, summary
from tenantml.settings import Settings

__all__ = ["EVENT", "FleetLoop", "policies", "resource_id"]

log = logging.getLogger(__name__)

EVENT = "tenantml.fleet.scaled"
MAX_BACKOFF_S = 30.0
STOP_DEADLINE_S = 30.0  # a pass may be stopping an idle worker (its SIGTERM grace)


def resource_id(worker_class: str) -> str:
    """The Prefect event resource of a worker class."""
    return f"tenantml.worker-class.{worker_class}"


def policies(settings: Settings, fixed: dict[str, int] | None = None) -> dict[str, FleetPolicy]:
    """Each training class's policy from the fleet settings; ``fixed`` counts pin min and max (provisioner off)."""
    fleet = settings.fleet
    found = {}
    for worker_class in WorkerClass:
        low, high = fleet.bounds(worker_class.value) if fixed is None else (fixed[worker_class.value],) * 2
        found[worker_class.value] = FleetPolicy(
            minimum=low, maximum=high, runs_per_worker=settings.prefect.runs_per_worker,
            cooldown_s=fleet.cooldown_s, drain_horizon_s=fleet.drain_horizon_s, rate_window_s=fleet.rate_window_s,
        )
    return found


@dataclass
class FleetLoop:
    """Runs :meth:`tick` every ``interval_s`` in a thread; ``home`` gets its state file's pids kept current."""

    workers: LocalWorkers
    provisioner: Provisioner
    records: FleetRecords
    prefect_api_url: str
    interval_s: float
    provisioned: bool = True  # False: min = max = the fixed counts, only replacement happens
    home: Path | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _announced: set[str] = field(default_factory=set)
    _changed_at: dict[str, datetime] = field(default_factory=dict)
    failures: int = 0  # passes failed in a row

    @classmethod
    def for_platform(cls, settings: Settings, workers: LocalWorkers, prefect_api_url: str,
                     home: Path | None = None, workload: WorkloadReader | None = None) -> FleetLoop:
        """The loop of ``tenantml up``: the workload and records from the settings' metadata database."""
        from tenantml.bootstrap import Connection

        store = Connection(settings).store
        provisioned = settings.fleet.provisioner
        fixed = None if provisioned else workers.initial_counts()
        return cls(workers, Provisioner(workers, workload or store, policies(settings, fixed)),
                   FleetRecords(store.engine), prefect_api_url, settings.fleet.interval_s, provisioned, home)

    def start(self) -> FleetLoop:
        self._thread = threading.Thread(target=self._run, name="provisioner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the current pass (which may be finishing a worker's stop)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(STOP_DEADLINE_S)

    def tick(self, now: datetime) -> list[ScalingDecision]:
        """One pass (see the module's docstring); raises ServiceUnavailable when an API or the database is down."""
        self._check_prefect()
        reaped = self.workers.reap()
        decisions = self.provisioner.tick(now)
        if not self.provisioned:
            decisions = [replace(d, reason=f"{d.reason} (provisioner off: the fixed count)") for d in decisions]
        draining = self.workers.draining()
        for decision in decisions:
            if decision.changes:
                self._changed_at[decision.worker_class] = decision.at
        self.records.record_fleet([
            FleetRecord(decision, len(draining.get(decision.worker_class, [])),
                        self.workers.restarts.get(decision.worker_class, 0),
                        self._changed_at.get(decision.worker_class))
            for decision in decisions
        ])
        announce = [d for d in decisions if d.changes or d.worker_class not in self._announced]
        if announce:
            self._announce(announce, draining)
        if reaped.changed or any(d.changes for d in decisions):
            self._write_pids()
        return decisions

    def _run(self) -> None:
        wait = 0.0
        while not self._stopping.wait(wait):
            try:
                self.tick(datetime.now(UTC))
            except Exception as err:  # the loop must outlive any one bad pass
                self.failures += 1
                wait = min(self.interval_s * 2 ** self.failures, MAX_BACKOFF_S)
                log.warning("provisioner pass failed (%d in a row), no fleet change; next try in %.0f s: %s",
                            self.failures, wait, err, exc_info=not isinstance(err, ServiceUnavailable))
                continue
            if self.failures:
                log.warning("provisioner passes work again after %d failures", self.failures)
            self.failures, wait = 0, self.interval_s

    def _check_prefect(self) -> None:
        url = self.prefect_api_url.rstrip("/") + "/health"
        try:
            httpx.get(url, timeout=5.0).raise_for_status()
        except httpx.HTTPError as err:
            raise ServiceUnavailable(
                f"the Prefect API at {self.prefect_api_url} did not answer ({type(err).__name__}: {err}): "
                "no worker is started, replaced or stopped until it does"
            ) from err

    def _announce(self, decisions: Sequence[ScalingDecision], draining: dict[str, list[str]]) -> None:
        """One Prefect event per decision; a failure to send is a warning (the decision is recorded)."""
        from prefect.events import Event
        from prefect.events.clients import PrefectEventsClient

        pools = queues(self.workers.settings)
        events = [
            Event.model_validate({
                "event": EVENT,
                "resource": {"prefect.resource.id": resource_id(d.worker_class),
                             "prefect.resource.name": f"{d.worker_class} workers",
                             "tenantml.work-pool": pools[d.worker_class].pool,
                             "tenantml.work-queue": pools[d.worker_class].name},
                "occurred": d.at,
                "payload": {**summary(d), "draining": draining.get(d.worker_class, []),
                            "restarts": self.workers.restarts.get(d.worker_class, 0)},
            })
            for d in decisions
        ]

        async def send() -> None:
            async with PrefectEventsClient(self.prefect_api_url) as client:
                for event in events:
                    await client.emit(event)

        try:
            asyncio.run(send())
        except Exception as err:  # websockets and Prefect raise many kinds; none may stop the loop
            log.warning("could not send %d fleet event(s) to %s: %s: %s", len(events), self.prefect_api_url,
                        type(err).__name__, err)
            return
        self._announced.update(d.worker_class for d in decisions)

    def _write_pids(self) -> None:
        """Keep the state file's worker pids current, so a platform that dies leaves no worker behind."""
        if self.home is None:
            return
        state = read_state(self.home)
        if state is None or state.supervisor_pid != os.getpid():
            return
        pids = {name: pid for name, pid in state.pids.items() if not name.startswith("worker-")}
        pids.update({service.name: service.pid for service in self.workers.services})
        write_state(replace(state, pids=pids))
