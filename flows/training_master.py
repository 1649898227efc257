"""The `training-master` flow: admit a tenant's training request into the queue.

Run it with `prefect deployment run 'training-master/default' --param tenant=... ` or from the
Prefect UI; `tenantml train` admits the same way without it. The run ends once the request is
admitted (or refused, or answered with an earlier one): from then on the training supervisor
(flows/supervisor.py, or `tenantml up`) schedules it, watches its attempts and fails them over,
one loop for all requests. A master run no longer lives as long as its training: one process
per waiting request cost about 70 MB each and polled Prefect twice a second (issue #8).

The request's story stays in Prefect: the run's result names the request, each attempt is a
`training-worker` run named ``<tenant>/<model> attempt N`` and tagged ``request:<id>``, and the
table artifact ``attempts-<id>`` holds its attempt history.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from tenantml.bootstrap import Connection
from tenantml.settings import load_settings

# scikit-learn stays out of this module's imports: admission needs it only to check parameters.


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
) -> Any:
    from tenantml.errors import TenantmlError
    from tenantml.services.admission import Decision, SubmissionLimits, TrainingOrder, submit_training

    logger = get_run_logger()
    settings = load_settings()
    connection = Connection(settings, create_schema=False)  # schema changes are `tenantml db upgrade`'s
    connection.require_current_schema()
    order = TrainingOrder(tenant, model, dataset, target, algorithm, dict(params or {}), force,
                          idempotency_key or f"flow-run:{flow_run.id}", promotion)
    try:
        admission = submit_training(connection.store, connection.storage, order,
                                    limits=SubmissionLimits.from_settings(settings))
    except TenantmlError as err:  # bad input: a clear, final answer; nothing to retry
        logger.error("refused: %s", err)
        return Failed(message=str(err))
    logger.info("%s", admission.message)
    result = {"request_id": admission.request_id, "decision": admission.decision.value, "message": admission.message}
    if admission.decision is Decision.ACCEPTED:
        logger.info("request %s waits in the queue; the training supervisor takes it from here (its attempts "
                    "are the training-worker runs tagged request:%s)", admission.request_id, admission.request_id)
    return Completed(message=admission.message, data=result)
