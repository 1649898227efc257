"""Prefect as the dispatcher: a deployment per worker class, flow-run states for liveness.

Each worker class is a queue of the training pool with a deployment of its own
(``training-worker/small``, ``training-worker/large``): ``run_deployment`` cannot target another
work pool, so escalation to the larger class is the choice of deployment. Prefect is named here
only; the supervisor sees a :class:`~tenantml.ports.Dispatcher` and :class:`~tenantml.ports.RunState`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from tenantml.domain.request import Lease, TrainingRequest, WorkerClass
from tenantml.ports import RunState

__all__ = ["AttemptsPublisher", "PrefectDispatcher", "PrefectRunLogs", "worker_deployment"]

log = logging.getLogger(__name__)

_STATES = {
    StateType.SCHEDULED: RunState.WAITING,
    StateType.PENDING: RunState.RUNNING,  # a worker took it: it must start within start_timeout_s
    StateType.PAUSED: RunState.WAITING,
    StateType.RUNNING: RunState.RUNNING,
    StateType.CANCELLING: RunState.RUNNING,
    StateType.COMPLETED: RunState.FINISHED,
    StateType.FAILED: RunState.FAILED,
    StateType.CRASHED: RunState.FAILED,
    StateType.CANCELLED: RunState.FAILED,
}


_PAGE = 200  # the Prefect API's largest page


def _state_of(run: FlowRun) -> tuple[RunState, str]:
    if run.state is None:
        return RunState.WAITING, ""
    return _STATES.get(run.state.type, RunState.UNKNOWN), run.state.message or run.state.name or ""


def worker_deployment(worker_class: WorkerClass) -> str:
    return f"training-worker/{worker_class.value}"


@contextmanager
def _api(api_url: str | None) -> Iterator[None]:
    """Name the Prefect API explicitly: Prefect reads ``PREFECT_API_URL`` once, at import."""
    if not api_url:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


class PrefectDispatcher:
    """Starts worker flow runs on the class's deployment and reads their states."""

    def __init__(self, api_url: str | None = None) -> None:
        self.api_url = api_url

    def dispatch(self, lease: Lease, worker_class: WorkerClass, name: str | None = None,
                 tags: Sequence[str] = ()) -> str:
        with _api(self.api_url):
            run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync here: no event loop
                worker_deployment(worker_class),
                parameters={"request_id": lease.request_id, "worker_uuid": lease.worker_uuid, "epoch": lease.epoch,
                            "worker_class": worker_class.value},
                timeout=0,
                idempotency_key=f"{lease.request_id}:{lease.epoch}",
                flow_run_name=name or f"{lease.request_id[:8]} lease {lease.epoch}",
                tags=list(tags) or [f"request:{lease.request_id}"],
                as_subflow=False,
            )
        return str(run.id)

    @contextmanager
    def _client(self) -> Iterator[SyncPrefectClient]:
        with _api(self.api_url), get_client(sync_client=True) as client:
            yield client

    def run_states(self, flow_run_ids: Sequence[str]) -> dict[str, tuple[RunState, str]]:
        """One filtered read for every run, in pages: the supervisor's one Prefect call per tick."""
        found: dict[str, tuple[RunState, str]] = {}
        try:
            with self._client() as client:
                for at in range(0, len(flow_run_ids), _PAGE):
                    page = [UUID(run_id) for run_id in flow_run_ids[at:at + _PAGE]]
                    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=page)),
                                                 limit=len(page))
                    for run in runs:
                        found[str(run.id)] = _state_of(run)
        except Exception as err:  # the API is briefly unreachable: judge by heartbeats alone
            log.warning("cannot read %d flow runs: %s", len(flow_run_ids), err)
        return found

    def cancel(self, flow_run_id: str) -> None:
        """Ask the worker to kill a replaced attempt's process; its writes are fenced regardless."""
        try:
            with self._client() as client:
                run = client.read_flow_run(UUID(flow_run_id))
                if run.state is not None and not run.state.is_final():
                    client.set_flow_run_state(
                        UUID(flow_run_id),
                        Cancelling(message="replaced by a newer attempt"),
                        force=True,
                    )
        except Exception as err:
            log.warning("cannot cancel flow run %s: %s", flow_run_id, err)


class _Sender(Protocol):
    def submit(self, what: str, call: Callable[[], object], key: str | None = None) -> None: ...


class AttemptsPublisher:
    """Shows each request's attempt history in the Prefect UI: the table artifact ``attempts-<id>``.

    Best effort and off the caller's thread: a slow or absent Prefect server slows the display,
    never the supervision loop. Newer tables of the same request replace older ones still waiting.
    """

    def __init__(self, sender: _Sender, api_url: str | None = None, mlflow_uri: str | None = None) -> None:
        """``mlflow_uri``: the tracking server, for the description's links to the run and the version."""
        self.sender, self.api_url, self.mlflow_uri = sender, api_url, mlflow_uri

    def publish(self, request: TrainingRequest) -> None:
        self.sender.submit(f"publishing the attempts of {request.id}", lambda: self._create(request),
                           key=f"attempts-{request.id}")

    def _create(self, request: TrainingRequest) -> None:
        """A new version of the keyed table, linked to the current attempt's worker run.

        Through the client rather than ``create_table_artifact``: that one takes the run from the
        calling context, and creating artifacts outside a run is deprecated in Prefect 3. The
        supervisor runs no flow; the attempt's own run is where a reader looks anyway.
        """
        from prefect.artifacts import TableArtifact
        from prefect.client.schemas.actions import ArtifactCreate

        from tenantml.services.history import Links, attempt_table, describe, mlflow_links

        attempt = request.current_attempt
        table = TableArtifact(table=attempt_table(request), key=f"attempts-{request.id}")
        links = mlflow_links(request, Links.of(None, self.mlflow_uri))
        with self._client() as client:
            client.create_artifact(ArtifactCreate(
                key=f"attempts-{request.id}", type="table", data=table.format(),
                description=f"Attempts of {request.tenant}/{request.model} (request {request.id}): "
                            f"{describe(request)}. Times are UTC." + (f" {links}" if links else ""),
                flow_run_id=UUID(attempt.flow_run_id) if attempt and attempt.flow_run_id else None,
            ))

    @contextmanager
    def _client(self) -> Iterator[SyncPrefectClient]:
        with _api(self.api_url), get_client(sync_client=True) as client:
            yield client


class PrefectRunLogs:
    """The supervisor's decisions as log lines of the attempt's worker run (its Logs tab in the UI),
    sent off the caller's thread: the supervisor runs no flow of its own to log into."""

    def __init__(self, sender: _Sender, api_url: str | None = None) -> None:
        self.sender, self.api_url = sender, api_url

    def note(self, flow_run_id: str | None, message: str, warning: bool = False) -> None:
        if not flow_run_id:
            return
        at = datetime.now(UTC)
        self.sender.submit(f"logging to flow run {flow_run_id}", lambda: self._send(flow_run_id, message, warning, at))

    def _send(self, flow_run_id: str, message: str, warning: bool, at: datetime) -> None:
        from prefect.client.schemas.actions import LogCreate

        with _api(self.api_url), get_client(sync_client=True) as client:
            client.create_logs([LogCreate(name="tenantml.supervisor", level=logging.WARNING if warning else logging.INFO,
                                          message=message, timestamp=at,  # type: ignore[arg-type]  # validated
                                          flow_run_id=UUID(flow_run_id))])
