"""The provisioner's loop on real `prefect worker` processes and a real Prefect server: up to the maximum
on a backlog, down to the minimum after the cooldown, a busy worker drained (never killed), a worker
killed from outside replaced, and every decision in the metadata and Prefect's event feed."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.client.orchestration import PrefectClient, SyncPrefectClient

from tenantml.adapters.database import create_database
from tenantml.adapters.fleet_records import FleetRecords
from tenantml.adapters.store import Store
from tenantml.domain.provisioning import ScalingDecision
from tenantml.domain.request import RequestStatus, TrainingRequest, TrainingSpec
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.local.drain import has_children
from tenantml.local.fleet import EVENT, FleetLoop, resource_id
from tenantml.local.project import project_dir, work_pool_template
from tenantml.local.workers import LocalWorkers, create_work_pools
from tenantml.settings import load_settings
from tests.support.servers import RunningServer, prefect_post
from tests.support.waiting import wait_for

COOLDOWN_S = 2.0


@dataclass
class Fleet:
    loop: FleetLoop
    workers: LocalWorkers
    store: Store
    tenant: str
    api_url: str
    pool: str
    folder: Path
    deployment: uuid.UUID

    def tick(self) -> dict[str, ScalingDecision]:
        return {d.worker_class: d for d in self.loop.tick(datetime.now(UTC))}

    def queue(self, count: int) -> list[str]:
        """``count`` requests waiting in the scheduler's queue for the small class."""
        ids = []
        for _ in range(count):
            spec = TrainingSpec(self.tenant, "m-" + uuid.uuid4().hex[:8], "d.csv", "y", "sgd_classifier", {}, "f" * 64)
            now = datetime.now(UTC)
            request = TrainingRequest(str(uuid.uuid4()), spec, RequestStatus.PENDING, now, now)
            self.store.add_request(request)
            ids.append(request.id)
        return ids

    def online(self) -> set[str]:
        """Names of the pool's workers that have sent Prefect a heartbeat (they poll)."""
        with SyncPrefectClient(self.api_url) as client:
            found = client.read_workers_for_work_pool(self.pool)  # type: ignore[attr-defined]
        return {w.name for w in found if w.status is not None and w.status.value == "ONLINE"}


async def _deploy(api_url: str, pool: str, project: Path) -> uuid.UUID:
    async with PrefectClient(api_url) as client:
        flow_id = await client.create_flow_from_name("held-run")
        return await client.create_deployment(
            flow_id, pool, work_pool_name=pool, work_queue_name="small",
            entrypoint="tests/support/held_flow.py:held",
            pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": str(project)}}],
        )


@pytest.fixture
def fleet(prefect_server: RunningServer, tmp_path: Path, tenant_name: str) -> Iterator[Fleet]:
    pool = "fleet-" + uuid.uuid4().hex[:8]
    settings = load_settings(
        home=tmp_path,
        prefect={"training_pool": pool, "master_pool": pool + "-master", "worker_query_seconds": 1},
        fleet={"small_min": 0, "small_max": 2, "large_min": 0, "large_max": 0, "cooldown_s": COOLDOWN_S,
               "drain_horizon_s": 0},
    )
    api_url = prefect_server.url
    project = project_dir()
    asyncio.run(create_work_pools(api_url, settings.prefect, work_pool_template(project)))
    deployment = asyncio.run(_deploy(api_url, pool, project))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TENANTML_"))}
    env.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_WORKER_QUERY_SECONDS="1",
               PREFECT_WORKER_HEARTBEAT_SECONDS="1")
    (tmp_path / "logs").mkdir()
    workers = LocalWorkers(settings.prefect, env, tmp_path / "logs", project, fleet=settings.fleet)
    store = Store(create_database(settings.database_url))
    store.add_tenant(tenant_name, hash_api_key(new_api_key()), datetime.now(UTC))
    loop = FleetLoop.for_platform(settings, workers, api_url, workload=store)
    try:
        yield Fleet(loop, workers, store, tenant_name, api_url, pool, tmp_path, deployment)
    finally:
        workers.stop_all()
        store.engine.dispose()


def _held_run(fleet: Fleet, release: Path) -> str:
    with SyncPrefectClient(fleet.api_url) as client:
        run = client.create_flow_run_from_deployment(fleet.deployment, parameters={"release": str(release)})
    return str(run.id)


def _state(fleet: Fleet, flow_run_id: str) -> str:
    with SyncPrefectClient(fleet.api_url) as client:
        state = client.read_flow_run(uuid.UUID(flow_run_id)).state
    return state.type.value if state is not None else "NONE"


def test_a_backlog_scales_up_to_the_maximum_then_down_to_the_minimum_draining_busy_workers(
    fleet: Fleet,
) -> None:
    fleet.workers.start_configured()
    assert fleet.workers.counts()["small"] == 0  # the minimum
    backlog = fleet.queue(3)
    decision = fleet.tick()["small"]
    assert (decision.current, decision.desired) == (0, 2)
    assert "capped at max 2" in decision.reason
    wait_for(lambda: len(fleet.online()) == 2, 60, "both new workers to poll Prefect")
    for _ in range(3):  # the backlog stays: no further than the maximum
        fleet.tick()
    assert fleet.workers.counts()["small"] == 2 and len(fleet.workers.services_of("small")) == 2

    release = fleet.folder / "release"
    run_id = _held_run(fleet, release)
    wait_for(lambda: _state(fleet, run_id) == "RUNNING", 90, "the held run to be running")
    busy = wait_for(lambda: [w for w in fleet.workers.services_of("small") if has_children(w.pid)], 30, "a busy worker")[0]

    for request_id in backlog:  # the queue empties
        fleet.store.finish(request_id, 0, RequestStatus.CANCELLED, datetime.now(UTC))
    down = wait_for(lambda: (d := fleet.tick()["small"]).changes and d, 60,
                    "the cooldown to pass and the class to go down to its minimum")
    assert (down.current, down.desired) == (2, 0) and "down to min 0 after the 2 s cooldown" in down.reason
    assert fleet.workers.counts()["small"] == 0
    # the idle worker stops; the busy one drains: alive, its run still running
    wait_for(lambda: fleet.tick() is not None and len(fleet.workers.services_of("small")) == 1, 60, "the idle worker to stop")
    for _ in range(3):
        fleet.tick()
    assert [s.name for s in fleet.workers.services_of("small")] == [busy.name] and busy.alive()
    assert fleet.workers.slots()["small"] == 0  # draining: the scheduler may send it nothing
    assert _state(fleet, run_id) == "RUNNING"
    record = {r.decision.worker_class: r for r in FleetRecords(fleet.store.engine).fleet_records()}["small"]
    assert (record.decision.desired, record.draining) == (0, 1)

    release.touch()
    wait_for(lambda: _state(fleet, run_id) in ("COMPLETED", "CRASHED", "FAILED"), 90, "the held run to end")
    assert _state(fleet, run_id) == "COMPLETED"  # drained, never killed
    wait_for(lambda: fleet.tick() is not None and not fleet.workers.services_of("small"), 60, "the drained worker to stop")
    assert not busy.alive()
    assert _events(fleet)  # at least the first decision and the scale-up were announced


def test_a_worker_killed_from_outside_is_replaced(fleet: Fleet) -> None:
    fleet.workers.scale("small", 1)
    (victim,) = fleet.workers.services_of("small")
    wait_for(lambda: fleet.online(), 60, "the worker to poll")
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    reaped = fleet.workers.reap()
    assert reaped.replaced == (victim.name,)
    (replacement,) = fleet.workers.services_of("small")
    assert replacement.name != victim.name and replacement.alive()
    assert fleet.workers.restarts == {"small": 1}
    assert fleet.workers.counts()["small"] == 1
    wait_for(lambda: replacement.name.removeprefix("worker-") in fleet.online(), 60, "the replacement to poll")


def _events(fleet: Fleet) -> list[dict[str, object]]:
    def read() -> list[dict[str, object]]:
        body = {"filter": {"event": {"name": [EVENT]}, "resource": {"id": [resource_id("small")]}}, "limit": 50}
        found = prefect_post(fleet.api_url, "/events/filter", body).json()["events"]
        return [e for e in found if e["resource"].get("tenantml.work-pool") == fleet.pool]

    events = wait_for(lambda: len(read()) >= 2 and read(), 60, "the fleet's events in Prefect")
    desired = sorted(int(e["payload"]["desired"]) for e in events)  # type: ignore[index]
    assert 2 in desired and 0 in desired
    return events
