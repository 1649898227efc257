"""Prefect as the dispatcher: deployments for masters and workers, flow-run states for liveness."""

from __future__ import annotations

import logging
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.states import Cancelling

from tenantml.domain.request import WorkerClass
from tenantml.services.master import RunState

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


class PrefectDispatcher:
    """Starts worker flow runs on the class's deployment and reads their states."""

    def dispatch(self, request_id: str, worker_uuid: str, epoch: int, worker_class: WorkerClass) -> str:
        run = run_deployment(
            worker_deployment(worker_class),
            parameters={"request_id": request_id, "worker_uuid": worker_uuid, "epoch": epoch,
                        "worker_class": worker_class.value},
            timeout=0,
            idempotency_key=f"{request_id}:{epoch}",
            flow_run_name=f"{request_id[:8]}-epoch-{epoch}",
            tags=[f"request:{request_id}"],
            as_subflow=False,
        )
        return str(run.id)

    def run_state(self, flow_run_id: str) -> tuple[RunState, str]:
        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
        except Exception as err:  # the API is briefly unreachable: judge by heartbeats alone
            log.warning("cannot read flow run %s: %s", flow_run_id, err)
            return RunState.UNKNOWN, str(err)
        if run.state is None:
            return RunState.WAITING, ""
        return _STATES.get(run.state.type, RunState.UNKNOWN), run.state.message or run.state.name or ""

    def cancel(self, flow_run_id: str) -> None:
        """Ask the worker to kill a replaced attempt's process; its writes are fenced regardless."""
        try:
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
                if run.state is not None and not run.state.is_final():
                    client.set_flow_run_state(flow_run_id, Cancelling(message="replaced by a newer attempt"), force=True)  # type: ignore[arg-type]
        except Exception as err:
            log.warning("cannot cancel flow run %s: %s", flow_run_id, err)


def submit_master(parameters: dict[str, Any], idempotency_key: str, api_url: str | None = None) -> str:
    """Start a training-master run for an admitted request; returns the flow run id.

    ``api_url`` names the Prefect API explicitly: Prefect reads its environment once, at import.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    updates = {PREFECT_API_URL: api_url} if api_url else {}
    with temporary_settings(updates=updates):
        run = run_deployment(
            MASTER_DEPLOYMENT, parameters=parameters, timeout=0, idempotency_key=idempotency_key, as_subflow=False
        )
    return str(run.id)
