"""Prefect's own recovery path, measured as its docs describe it: the peer of the recovery benchmark.

A Prefect server configured as `tenantml up` runs it (auth string, CSRF, SQLite), a process work
pool as Prefect ships it (a fresh interpreter per flow run), and the two automations a Prefect user
would create *before* the first run:

- the zombie detector of ``docs/v3/advanced/detect-zombie-flows.mdx``: a proactive trigger after a
  ``prefect.flow-run.heartbeat``, expecting another heartbeat or a final state ``within`` 90 s, for
  each ``prefect.resource.id``; it marks the run Crashed;
- a resubmit: a reactive trigger on ``prefect.flow-run.Crashed`` of the peer deployment that runs it
  again (the peer has no checkpoints: it starts over).

Flow runs send heartbeats every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (default 180, at least
30; set to 30 here), from a thread of the flow-run process, so a SIGSTOP stops them. Every event is
read back from the server (``/events/filter``, what ``prefect events stream`` shows), so the table
can say when the last heartbeat arrived and when the automation fired, not only the end result.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from tenantml.local.processes import Service, claim_port, start_service, stop_services
from tenantml.local.servers import Server, prefect_server
from tests.support.waiting import flow_run_pid, wait_for

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

__all__ = ["HEARTBEAT_S", "WITHIN_S", "PrefectPeer", "fail", "prefect_peer", "release"]

HEARTBEAT_S = 30  # Prefect's minimum
WITHIN_S = 90  # the docs' window for 30 s heartbeats
AUTH = "bench:prefect-peer"
PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class PrefectPeer:
    """A running peer: its server, worker and the peer deployment; the helpers measure one failure each."""

    server: Server
    env: dict[str, str]
    deployment_id: str
    worker: Service
    seen: set[str] = field(default_factory=set)

    @contextmanager
    def client(self) -> Iterator[SyncPrefectClient]:
        """Prefect's sync client, against this server only."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.server.url, PREFECT_API_AUTH_STRING: AUTH}), \
                get_client(sync_client=True) as client:
            yield client

    def next_running(self, timeout_s: float) -> tuple[str, int, datetime]:
        """A running peer flow run not measured before: its id, process and when it started running."""
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, \
            FlowRunFilterState, FlowRunFilterStateType
        from prefect.client.schemas.objects import StateType

        def running() -> tuple[str, int, datetime] | None:
            with self.client() as client:
                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id])),
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
                )
            for run in runs:
                if str(run.id) not in self.seen and (pid := flow_run_pid(str(run.id))) and run.start_time:
                    return str(run.id), pid, run.start_time
            return None

        found = wait_for(running, timeout_s, "a running peer flow run", every_s=0.1)
        self.seen.add(found[0])
        return found

    def state(self, run_id: str) -> tuple[str, str | None, datetime | None]:
        with self.client() as client:
            run = client.read_flow_run(run_id)
        assert run.state is not None
        return run.state.type.value, run.state.message, run.state.timestamp

    def events(self, run_id: str, kind: str) -> list[datetime]:
        """When the server recorded each ``kind`` event of a flow run (``prefect.flow-run.heartbeat``, ...)."""
        from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

        with self.client() as client:
            response = client.request(
                "POST", "/events/filter",
                json={"filter": EventFilter(
                    occurred=EventOccurredFilter(since=datetime.now(UTC) - timedelta(hours=2)),
                    event=EventNameFilter(name=[kind]),
                    resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
                ).model_dump(mode="json"), "limit": 200},
            )
        response.raise_for_status()
        return sorted(datetime.fromisoformat(e["occurred"]) for e in response.json()["events"])

    def wait_crashed(self, run_id: str, timeout_s: float) -> datetime | None:
        """When the run left Running (None: still Running at the deadline: never detected)."""
        try:
            _, _, at = wait_for(lambda: (s := self.state(run_id))[0] != "RUNNING" and s, timeout_s,
                                   "the peer run to leave Running", every_s=0.5)
        except AssertionError:
            return None
        return at

    def stop(self) -> None:
        stop_services([self.worker, self.server.service])


def _create_pool_and_automations(peer_env: dict[str, str]) -> str:
    from prefect import flow
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState, RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    with temporary_settings({PREFECT_API_URL: peer_env["PREFECT_API_URL"], PREFECT_API_AUTH_STRING: AUTH}):
        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name="bench-peer", type="process",
                                                   base_job_template=ProcessWorker.get_default_base_job_template()),
                                    overwrite=True)
        deployment_id = flow.from_source(source=str(PROJECT), entrypoint="tests/benchmarks/peer_flow.py:peer_training") \
            .deploy(name="peer", work_pool_name="bench-peer", print_next_steps=False)
        Automation(
            name="Crash zombie flows",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                        "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
                within=timedelta(seconds=WITHIN_S),
            ),
            actions=[ChangeFlowRunState(state=StateType.CRASHED, message=f"no heartbeat for {WITHIN_S} s")],
        ).create()
        Automation(
            name="Resubmit crashed peer runs",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Crashed"},
                match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
                match_related=ResourceSpecification({"prefect.resource.id": f"prefect.deployment.{deployment_id}"}),
                posture=Posture.Reactive, threshold=1,
            ),
            actions=[RunDeployment(source="selected", deployment_id=deployment_id, parameters={})],
        ).create()
        with get_client(sync_client=True) as client:
            client.create_flow_run_from_deployment(deployment_id)
    return str(deployment_id)


@contextmanager
def prefect_peer(folder: Path, poll_s: float = 1.0) -> Iterator[PrefectPeer]:
    """The peer on its own server in ``folder``; the automations exist before the first run starts."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TENANTML_"))}
    server = prefect_server(claim_port("Prefect server", 0), base, folder / "server", folder, PROJECT,
                            auth_string=AUTH).wait_ready()
    env = {**base, "PREFECT_API_URL": server.url, "PREFECT_API_AUTH_STRING": AUTH,
           "PREFECT_HOME": str(folder / "client"), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
           "PREFECT_WORKER_QUERY_SECONDS": str(poll_s)}
    worker: Service | None = None
    try:
        deployment_id = _create_pool_and_automations(env)
        worker = start_service("bench-peer-worker", [str(Path(sys.executable).parent / "prefect"), "worker", "start",
                               "--pool", "bench-peer", "--type", "process", "--limit", "1"], env, folder, PROJECT)
        peer = PrefectPeer(server, env, deployment_id, worker)
        yield peer
    finally:
        stop_services([s for s in (worker, server.service) if s is not None])


def fail(pid: int, hang: bool) -> float:
    """SIGSTOP (a hang) or SIGKILL a flow-run process; when, as a wall-clock timestamp."""
    at = time.time()
    os.kill(pid, signal.SIGSTOP if hang else signal.SIGKILL)
    return at


def release(pid: int) -> None:
    """Kill a hung process so that its slot frees (the peer worker runs one flow run at a time)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
