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

from tenantml.domain.request import RequestStatus, TrainingRequest
from tenantml.bootstrap import Connection
from tenantml.settings import load_settings
from tenantml.services.history import attempt_rows
from tenantml.services.master import TrainingMaster

# MLflow and scikit-learn stay out of this module's imports: a master starts in a fresh process,
# and every second it spends importing is a second before the first worker is dispatched.


class _LazyCompletion:
    """Imports MLflow only when a request ends."""

    def __init__(self, connection: Connection, retention: int) -> None:
        self.connection, self.retention = connection, retention

    def finalize(self, request: TrainingRequest) -> None:
        from tenantml.services.finalize import Completion

        Completion(self.connection.tracking, self.connection.registry, self.retention).finalize(request)


def _publish(request: TrainingRequest) -> None:
    """Show the attempt history in the Prefect UI."""
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
        from tenantml.services.admission import Decision, SubmissionLimits, TrainingOrder, submit_training

        admission = submit_training(
            connection.store,
            connection.storage,
            TrainingOrder(tenant, model, dataset, target, algorithm, dict(params or {}), force,
                          idempotency_key or f"flow-run:{flow_run.id}", promotion),
            limits=SubmissionLimits.from_settings(settings),
        )
        logger.info("%s", admission.message)
        if admission.decision is not Decision.ACCEPTED:
            return Completed(message=admission.message, data={"request_id": admission.request_id})
        request_id = admission.request_id

    master = TrainingMaster(
        connection.store,
        connection.dispatcher,
        _LazyCompletion(connection, settings.training.checkpoint_retention),
        settings.training,
        on_change=_publish,
    )
    final = master.run(request_id, master_id=str(flow_run.id))
    summary = {"request_id": final.id, "status": final.status.value, "model_version": final.model_version,
               "attempts": len(final.attempts)}
    if final.status is RequestStatus.FAILED:
        return Failed(message=final.reason or "training failed", data=summary)
    return summary
