"""Prefect as the dispatcher: deployments for masters and workers, flow-run states for liveness.

Each worker class is a queue of the training pool with a deployment of its own
(``training-worker/small``, ``training-worker/large``): ``run_deployment`` cannot target another
work pool, so escalation to the larger class is the choice of deployment. Prefect is named here
only; the master sees a :class:`~tenantml.ports.Dispatcher` and :class:`~tenantml.ports.RunState`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from tenantml.domain.request import Lease, WorkerClass
from tenantml.errors import ServiceUnavailable
from tenantml.ports import RunState

__all__ = ["MASTER_DEPLOYMENT", "PrefectDispatcher", "submit_master", "worker_deployment"]

log = logging.getLogger(__name__)

MASTER_DEPLOYMENT = "training-master/default"

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

    def dispatch(self, lease: Lease, worker_class: WorkerClass) -> str:
        with _api(self.api_url):
            run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync here: no event loop
                worker_deployment(worker_class),
                parameters={"request_id": lease.request_id, "worker_uuid": lease.worker_uuid, "epoch": lease.epoch,
                            "worker_class": worker_class.value},
                timeout=0,
                idempotency_key=f"{lease.request_id}:{lease.epoch}",
                flow_run_name=f"{lease.request_id[:8]}-epoch-{lease.epoch}",
                tags=[f"request:{lease.request_id}"],
                as_subflow=False,
            )
        return str(run.id)

    @contextmanager
    def _client(self) -> Iterator[SyncPrefectClient]:
        with _api(self.api_url), get_client(sync_client=True) as client:
            yield client

    def run_state(self, flow_run_id: str) -> tuple[RunState, str]:
        try:
            with self._client() as client:
                run = client.read_flow_run(UUID(flow_run_id))
        except Exception as err:  # the API is briefly unreachable: judge by heartbeats alone
            log.warning("cannot read flow run %s: %s", flow_run_id, err)
            return RunState.UNKNOWN, str(err)
        if run.state is None:
            return RunState.WAITING, ""
        return _STATES.get(run.state.type, RunState.UNKNOWN), run.state.message or run.state.name or ""

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


def submit_master(parameters: dict[str, Any], idempotency_key: str, api_url: str | None = None) -> str:
    """Start a training-master run for an admitted request; returns the flow run id."""
    try:
        with _api(api_url):
            run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync here: no event loop
                MASTER_DEPLOYMENT, parameters=parameters, timeout=0, idempotency_key=idempotency_key,
                as_subflow=False,
            )
    except Exception as err:  # Prefect raises httpx, its own and object-not-found errors alike
        raise ServiceUnavailable(
            f"cannot start a training master on the Prefect API {api_url or '(from PREFECT_API_URL)'}: "
            f"{type(err).__name__}: {err}; check that `tenantml up` runs (or TENANTML_PREFECT__API_URL)"
        ) from err
    return str(run.id)
