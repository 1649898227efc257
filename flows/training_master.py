"""The `training-master` flow: admit a request, then watch its attempts until it ends.

Run it with `prefect deployment run 'training-master/default' --param tenant=... ` or
`tenantml train`. Given ``request_id`` (as `tenantml train` and the reconciler do) it skips
admission and takes over the watch of that request from the records.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from tenantml.adapters.orchestration import PrefectDispatcher
from tenantml.domain.request import RequestStatus, TrainingRequest
from tenantml.platform.connection import Connection
from tenantml.settings import load_settings
from tenantml.training.completion import Completion
from tenantml.training.history import attempt_rows
from tenantml.training.submission import Decision, TrainingOrder, submit_training
from tenantml.training.supervisor import Supervisor


def _publish(connection: Connection, request: TrainingRequest) -> None:
    """Show the attempt history in the Prefect UI and mirror the current attempt into MLflow."""
    attempt = request.current_attempt
    if request.mlflow_run_id and attempt is not None:
        connection.tracking.mirror(
            request.mlflow_run_id, status=request.status.value, attempt=attempt.number,
            worker_uuid=request.worker_uuid or "", epoch=request.epoch, worker_class=attempt.worker_class.value,
        )
    create_table_artifact(
        table=attempt_rows(request),
        key=f"attempts-{request.id}",
        description=f"Attempts of request {request.id} ({request.tenant}/{request.model}): {request.status.value}",
    )


@flow(name="training-master")
def training_master(
    tenant: str = "",
    model: str = "",
    dataset: str = "",
    target: str = "",
    algorithm: str = "sgd_classifier",
    params: dict[str, Any] | None = None,
    force: bool = False,
    promotion: str = "always",
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> Any:
    logger = get_run_logger()
    settings = load_settings()
    connection = Connection(settings)
    if request_id is None:
        admission = submit_training(
            connection.store,
            connection.storage,
            TrainingOrder(tenant, model, dataset, target, algorithm, dict(params or {}), force,
                          idempotency_key or f"flow-run:{flow_run.id}", promotion),
        )
        logger.info("%s", admission.message)
        if admission.decision is not Decision.ACCEPTED:
            return Completed(message=admission.message, data={"request_id": admission.request_id})
        request_id = admission.request_id

    request = connection.store.get_request(request_id)
    if request.mlflow_run_id is None and request.status.is_active:
        connection.store.set_mlflow_run(request_id, connection.tracking.start_run(request), request.updated_at)
    supervisor = Supervisor(
        connection.store,
        PrefectDispatcher(),
        Completion(connection.tracking, connection.registry, settings.training.checkpoint_retention),
        settings.training,
        on_change=lambda request: _publish(connection, request),
    )
    final = supervisor.run(request_id, master_id=str(flow_run.id))
    summary = {"request_id": final.id, "status": final.status.value, "model_version": final.model_version,
               "attempts": len(final.attempts)}
    if final.status is RequestStatus.FAILED:
        return Failed(message=final.reason or "training failed", data=summary)
    return summary
