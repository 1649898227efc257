"""The `training-worker` flow: one attempt of a request on a stateless worker.

It holds no state of its own: everything it needs comes from the metadata store (request,
checkpoint pointer) and MLflow (checkpoint artifacts), and everything it learns goes back there
under its lease epoch. SIGTERM (spot reclaim, scale-down) commits a checkpoint and hands the
training back to the master.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import flow, get_client, get_run_logger
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.runtime import flow_run as this_run
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled, Failed

from tenantml.adapters.worker_limits import limit_resources
from tenantml.bootstrap import Connection
from tenantml.domain.request import AttemptEnd, Lease, TrainingRequest, WorkerClass
from tenantml.errors import StaleEpoch
from tenantml.services.admission import training_limits
from tenantml.services.background import BackgroundSender
from tenantml.services.history import Links, Progress, progress_text
from tenantml.services.worker import MIRROR_FLUSH_S, TrainingAttempt
from tenantml.settings import load_settings


def _clear_lease(flow: Any, flow_run: Any, state: Any) -> None:
    """Hook: tell the master early that this attempt is gone. Correctness never depends on it."""
    params = flow_run.parameters
    try:
        connection = Connection(load_settings(), create_schema=False)
        connection.store.report_attempt_end(
            Lease(params["request_id"], params["worker_uuid"], params["epoch"]), AttemptEnd.CRASHED,
            f"worker run {state.name.lower()}: {state.message or ''}".strip(), datetime.now(UTC),
        )
    except StaleEpoch:
        pass
    except Exception as err:  # a hook must never mask the run's own outcome
        get_run_logger().warning("could not report the end of attempt: %s", err)


@flow(name="training-worker", on_crashed=[_clear_lease], on_failure=[_clear_lease])
def training_worker(request_id: str, worker_uuid: str, epoch: int, worker_class: str = "small") -> Any:
    logger = get_run_logger()
    settings = load_settings()
    connection = Connection(settings, create_schema=False)  # schema changes are `tenantml db upgrade`'s
    connection.require_current_schema()
    tracking, registry = connection.tracking, connection.registry  # import MLflow before limiting memory
    background = BackgroundSender()  # Prefect and MLflow calls off the training's hot path; before the limit
    limit_resources(settings.training, WorkerClass(worker_class))
    lease = Lease(request_id, worker_uuid, epoch)
    try:  # a superseded run (the UI's Retry on a replaced attempt) writes nothing, not even progress
        connection.store.check_current(lease)
    except StaleEpoch:
        current = connection.store.get_request(request_id)
        logger.warning("request %s: lease %s was superseded (the request is at attempt %s, %s); nothing to do",
                       request_id, epoch, len(current.attempts), current.status.value)
        return Cancelled(message=f"superseded by attempt {len(current.attempts)}")
    links = Links.of(settings.prefect.api_url or PREFECT_API_URL.value(), connection.tracking_uri)
    flow_run_id, progress_ids = this_run.get_id(), list[UUID]()

    def on_progress(request: TrainingRequest, progress: Progress) -> None:
        """The progress artifact ``progress-<request>``: one per request (each attempt a new version), its bar
        updated in place, its description the step, attempt, ETA, latest metrics and a link to the MLflow run.

        Called on the background thread, outside the run's context: so through the client, naming the run.
        """
        run_id = request.mlflow_run_id
        text = progress_text(request, progress, links, tracking.experiment_of(run_id) if run_id else None)
        with get_client(sync_client=True) as client:
            if not progress_ids:
                progress_ids.append(client.create_artifact(ArtifactCreate(
                    key=f"progress-{request_id}", type="progress", data=progress.percent, description=text,
                    flow_run_id=UUID(flow_run_id) if flow_run_id else None)).id)
            else:
                client.update_artifact(progress_ids[0], ArtifactUpdate(data=progress.percent, description=text))

    attempt = TrainingAttempt(
        lease,
        connection.store,
        tracking,
        registry,
        settings.training,
        on_progress=on_progress,
        background=background,
        limits=training_limits(settings),
        links=links,
    )
    signal.signal(signal.SIGTERM, lambda *_: attempt.preempt())
    logger.info("request %s: worker %s (epoch %s, class %s) starting", request_id, worker_uuid, epoch, worker_class)
    try:
        outcome = attempt.run()
    finally:
        background.close(timeout_s=MIRROR_FLUSH_S)
    logger.info("request %s: attempt ended %s (%s)", request_id, outcome.end, outcome.reason)
    if outcome.end is AttemptEnd.COMPLETED:
        return {"request_id": request_id, "model_version": outcome.model_version, "resume_step": outcome.resume_step}
    if outcome.end is None or outcome.end is AttemptEnd.PREEMPTED:
        return Cancelled(message=f"handed back: {outcome.reason}")
    return Failed(message=f"{outcome.end.value}: {outcome.reason}")
