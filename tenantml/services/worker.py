"""One attempt of a training request, as run by a stateless worker.

The worker holds a UUID and a lease epoch. It loads the dataset and the last committed
checkpoint, trains step by step, heartbeats from a thread, and commits a checkpoint at least every
``checkpoint_interval_s``: upload first, then move the pointer with a fenced write. Every write
carries the epoch; the first refused write (:class:`StaleEpoch`) stops the attempt and nothing
more is written. Failures are classified so the master knows what to do next:

- a user error (bad data or parameters) fails the request at once;
- ``MemoryError`` is a resource failure: the next attempt runs on the large class;
- a preemption (``preempt()``: on SIGTERM, or when the scheduler asks through the heartbeat's
  answer) commits a checkpoint and hands the work back;
- anything else is a crash: the next attempt resumes on the same class.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from tenantml.domain.names import registered_model_name
from tenantml.domain.request import AttemptEnd, Lease, RequestStatus, TrainingRequest
from tenantml.errors import InvalidRequest, StaleEpoch
from tenantml.ports import CheckpointStore, ModelRegistry, RunTracking, WorkerStore
from tenantml.services.background import BackgroundSender
from tenantml.services.history import Links, Progress, run_description
from tenantml.settings import TrainingSettings
from tenantml.ml.algorithms import Trainer, trainer_for
from tenantml.ml.dataset import TrainingData, prepare, read_table
from tenantml.ml.limits import TrainingLimits, check_checkpoint, check_training

__all__ = ["AttemptOutcome", "AttemptTracking", "TrainingAttempt"]

log = logging.getLogger(__name__)

MIRROR_FLUSH_S = 10.0
"""How long an ending attempt waits for its last mirrors to reach MLflow before it gives up on them."""
METRIC_POINTS = 100
"""Points of the metric curves an attempt measures, evenly over the training's steps (and one at each commit)."""
POINTS_PER_REQUEST = 25
"""Measured points are sent to MLflow in one request once this many wait, and at every checkpoint commit.
One request a point made MLflow's calls most of a short training's time (bench_drain: 80 calls in a 17 s
attempt of 320 steps)."""
PROGRESS_EVERY_S = 1.0
"""How often the progress shown to people is updated at most."""


def _now() -> datetime:
    return datetime.now(UTC)


MetricPoint = tuple[int, int, Mapping[str, float]]
"""A point of the metric curves: the step, when it was measured (ms since the epoch), the metrics."""


class AttemptTracking(RunTracking, CheckpointStore, Protocol):
    """The request's MLflow run: its mirror of progress, its description, and the checkpoint bytes under it."""

    def describe(self, run_id: str, note: str, tags: Mapping[str, object] | None = None) -> None: ...
    def record_points(self, run_id: str, points: Sequence[MetricPoint]) -> None: ...


@dataclass(frozen=True)
class AttemptOutcome:
    end: AttemptEnd | None  # None: fenced off, nothing more to say
    reason: str | None = None
    model_version: str | None = None
    resume_step: int = 0
    steps: int = 0


class _Heartbeat(threading.Thread):
    """Sends the heartbeat every interval; sets ``fenced`` on the first refused write, and calls
    ``on_handback`` with the reason when the scheduler's answer asks the attempt to hand back."""

    def __init__(self, store: WorkerStore, lease: Lease, interval_s: float,
                 on_handback: Callable[[str], None]) -> None:
        super().__init__(name="tenantml-heartbeat", daemon=True)
        self.store, self.lease, self.interval_s, self.on_handback = store, lease, interval_s, on_handback
        self.step, self.total = 0, 0
        self.fenced = threading.Event()
        self._halt = threading.Event()

    def beat(self) -> None:
        try:
            handback = self.store.heartbeat(self.lease, self.step, self.total, _now())
            if handback is not None:
                self.on_handback(handback)
        except StaleEpoch:
            self.fenced.set()
        except Exception:  # a passing database error: the next beat tries again
            log.warning("heartbeat failed", exc_info=True)

    def run(self) -> None:
        while not self._halt.wait(self.interval_s) and not self.fenced.is_set():
            self.beat()

    def stop(self) -> None:
        self._halt.set()


class TrainingAttempt:
    def __init__(
        self,
        lease: Lease,
        store: WorkerStore,
        checkpoints: AttemptTracking,
        models: ModelRegistry,
        settings: TrainingSettings,
        on_progress: Callable[[TrainingRequest, Progress], None] | None = None,
        background: BackgroundSender | None = None,
        limits: TrainingLimits | None = None,
        links: Links | None = None,
    ) -> None:
        """``background`` carries the MLflow mirrors off the training's hot path (one of its own if None);
        ``limits`` are the ``limits`` settings (tenantml.services.admission.training_limits). ``on_progress``
        shows where the attempt is (the Prefect progress artifact); it is called on ``background``, at
        most every PROGRESS_EVERY_S and only while this attempt holds the lease. ``links`` point the MLflow
        run's description at the Prefect UI."""
        self.lease, self.store, self.checkpoints, self.models = lease, store, checkpoints, models
        self.settings = settings
        self.limits = limits or TrainingLimits()
        self.links = links or Links()
        self.on_progress = on_progress
        self._last_progress: Progress | None = None
        self._points: list[MetricPoint] = []  # measured, not yet handed to the background
        self.background = background or BackgroundSender()
        self._owns_background = background is None
        self._preempted = threading.Event()
        self._preempt_reason = "SIGTERM"

    def preempt(self, reason: str = "SIGTERM") -> None:
        """Ask the attempt to commit a checkpoint and hand the work back (SIGTERM, spot reclaim, fair share)."""
        if not self._preempted.is_set():
            self._preempt_reason = reason
            self._preempted.set()

    def run(self) -> AttemptOutcome:
        lease = self.lease
        self.store.mark_running(lease, _now())
        request = self.store.get_request(lease.request_id)
        if request.mlflow_run_id is None:  # the first attempt opens the request's MLflow run
            self.store.set_mlflow_run(lease.request_id, self.checkpoints.start_run(request), _now())
            request = self.store.get_request(lease.request_id)
        heartbeat = _Heartbeat(self.store, lease, self.settings.heartbeat_interval_s, self.preempt)
        heartbeat.beat()
        heartbeat.start()
        resume_step = 0
        try:
            data = prepare(read_table(request.spec.dataset), request.spec.target)
            trainer = trainer_for(request.spec.algorithm, request.spec.params, data)
            # Submission counted lines and assumed two classes; now the rows and classes are known.
            check_training(request.spec.algorithm, trainer.params, data.n_rows, len(data.feature_names),
                           trainer.n_classes, self.limits)
            if request.checkpoint is not None:
                trainer.restore(self.checkpoints.download_checkpoint(request.checkpoint))
            resume_step = trainer.completed_steps
            heartbeat.step, heartbeat.total = resume_step, trainer.total_steps
            self._mirror(request, status=RequestStatus.RUNNING.value, resume_step=resume_step,
                         attempt=len(request.attempts), worker_class=request.worker_class.value,
                         loss_metric=trainer.loss)
            self._describe(request)
            self._train(request, trainer, heartbeat)
            version = self._register(request, trainer, data)
            return AttemptOutcome(AttemptEnd.COMPLETED, model_version=version, resume_step=resume_step,
                                  steps=trainer.total_steps)
        except StaleEpoch:
            log.warning("request %s: epoch %s was fenced off; stopping without further writes",
                        lease.request_id, lease.epoch)
            return AttemptOutcome(None, "fenced", resume_step=resume_step)
        except _Preempted as preempted:
            return self._report(AttemptEnd.PREEMPTED, f"preempted at step {preempted.step}: {self._preempt_reason}",
                                resume_step)
        except InvalidRequest as err:
            try:
                self.store.finish(lease.request_id, lease.epoch, RequestStatus.FAILED, _now(), str(err), AttemptEnd.USER_ERROR)
            except StaleEpoch:
                return AttemptOutcome(None, "fenced", resume_step=resume_step)
            return AttemptOutcome(AttemptEnd.USER_ERROR, str(err), resume_step=resume_step)
        except MemoryError as err:
            return self._report(AttemptEnd.RESOURCE_EXHAUSTED, f"out of memory: {err or 'MemoryError'}", resume_step)
        except Exception as err:
            return self._report(AttemptEnd.CRASHED, f"{type(err).__name__}: {err}", resume_step)
        finally:
            heartbeat.stop()
            if self._owns_background:
                self.background.close(MIRROR_FLUSH_S)

    # -- steps ---------------------------------------------------------------------------
    def _train(self, request: TrainingRequest, trainer: Trainer, heartbeat: _Heartbeat) -> None:
        """Step until done: a checkpoint every interval, a point of the metric curves every ``total /
        METRIC_POINTS`` steps (measuring costs a prediction on up to 10,000 rows: not every step)."""
        lease, total = self.lease, trainer.total_steps
        interval = self.settings.checkpoint_interval_s
        every = max(1, math.ceil(total / METRIC_POINTS))
        # Snapshots are taken when a commit starts; start the next one early by what a commit
        # costs, so that a failure never loses more than one interval of training.
        last_commit, commit_cost = time.monotonic(), 0.0
        watch = _Watch(trainer.completed_steps, time.monotonic())
        while trainer.completed_steps < total:
            if heartbeat.fenced.is_set():
                raise StaleEpoch(lease.request_id, lease.epoch)
            if self._preempted.is_set():
                self._commit(request, trainer, watch)
                raise _Preempted(trainer.completed_steps)
            trainer.advance()
            step = heartbeat.step = trainer.completed_steps
            started = time.monotonic()
            if started - last_commit >= interval - commit_cost:
                self._commit(request, trainer, watch)
                last_commit, commit_cost = started, time.monotonic() - started
            elif step % every == 0 and step < total:
                self._log_point(request, watch.measure(trainer), step)
            self._show(request, trainer, watch, heartbeat)
        self._commit(request, trainer, watch)
        self._show(request, trainer, watch, heartbeat)

    def _log_point(self, request: TrainingRequest, metrics: dict[str, float], step: int) -> None:
        self._points.append((step, int(time.time() * 1000), metrics))
        if len(self._points) >= POINTS_PER_REQUEST:
            self._send_points(request)

    def _send_points(self, request: TrainingRequest) -> None:
        """Hand the points measured since the last send to MLflow in one background call."""
        if not self._points:
            return
        points, self._points = self._points, []
        self.background.submit(f"logging the metrics up to step {points[-1][0]} into MLflow", self._while_current(
            functools.partial(self.checkpoints.record_points, request.mlflow_run_id or "", points)))

    def _show(self, request: TrainingRequest, trainer: Trainer, watch: _Watch, heartbeat: _Heartbeat) -> None:
        """Hand the progress to ``on_progress`` at most every PROGRESS_EVERY_S (and at the last step),
        never once the heartbeat was refused, and in the background only if the lease is still held."""
        step, total = trainer.completed_steps, trainer.total_steps
        now = time.monotonic()
        if self.on_progress is None or heartbeat.fenced.is_set():
            return
        if now - watch.shown_at < PROGRESS_EVERY_S and step < total:
            return
        watch.shown_at = now
        done = step - watch.start_step
        eta = (total - step) * (now - watch.started_at) / done if done > 0 else None
        progress = self._last_progress = Progress(step, total, len(request.attempts), request.worker_class.value,
                                                  watch.start_step, eta, dict(watch.metrics or {}))
        self.background.submit("showing the progress", self._while_current(
            functools.partial(self.on_progress, request, progress)), key="progress")

    def _describe(self, request: TrainingRequest, registered: tuple[str, str] | None = None) -> None:
        """The MLflow run's description and its links to this request's Prefect runs."""
        if not request.mlflow_run_id:
            return
        current = request.current_attempt
        flow_run = current.flow_run_id if current else None
        tags = {"attempts": len(request.attempts), "prefect_flow_run_id": flow_run or "",
                "prefect_flow_run_url": self.links.flow_run(flow_run) or ""}
        self.background.submit("describing the MLflow run", self._while_current(functools.partial(
            self.checkpoints.describe, request.mlflow_run_id, run_description(request, self.links, registered), tags)))

    def _commit(self, request: TrainingRequest, trainer: Trainer, watch: _Watch) -> None:
        """Upload the checkpoint, then move the pointer only if this epoch is still current."""
        lease, step = self.lease, trainer.completed_steps
        run_id = request.mlflow_run_id or ""
        self.store.check_current(lease)  # a fenced worker uploads nothing
        metrics = watch.measure(trainer) if step > 0 else {}
        state = trainer.state()
        check_checkpoint(trainer.algorithm, len(state), step, self.limits)
        checkpoint = self.checkpoints.upload_checkpoint(run_id, state, lease.epoch, step)
        self.store.commit_checkpoint(lease, checkpoint, _now())
        self._send_points(request)
        tags = {"step": step, "checkpoint_step": step, "worker_uuid": lease.worker_uuid, "epoch": lease.epoch}
        self.background.submit(
            f"mirroring the checkpoint at step {step} into MLflow",
            self._while_current(functools.partial(self.checkpoints.record, run_id, tags=tags, metrics=dict(metrics),
                                                  step=step)),
        )

    def _register(self, request: TrainingRequest, trainer: Trainer, data: TrainingData) -> str:
        """Register this attempt's version, then claim completion with a fenced write.

        A worker never deletes another attempt's version: a stale one could delete the winner's.
        A refused completion deletes only its own version; the master's finalization removes any
        other version of the request that is not the one the request completed with.
        """
        lease, spec = self.lease, request.spec
        run_id = request.mlflow_run_id or ""
        import pandas as pd

        sample = pd.DataFrame(data.features[:5], columns=list(data.feature_names))
        self.store.check_current(lease)
        model_uri = self.models.log_model(run_id, trainer.estimator, sample, lease.epoch,
                                          name=f"{spec.model}-{request.id[:8]}")  # as the run is named
        self.store.check_current(lease)
        metrics = trainer.final_metrics()
        version = self.models.register(
            spec.tenant,
            spec.model,
            model_uri,
            run_id,
            {
                "request_id": request.id,
                "epoch": str(lease.epoch),
                "dataset_fingerprint": spec.dataset_fingerprint,
                "algorithm": spec.algorithm,
                "features": [[n, t] for n, t in zip(data.feature_names, data.feature_types, strict=True)],
                **{f"metric.{k}": str(v) for k, v in metrics.items()},
            },
        )
        try:
            self.store.complete(lease, version, metrics, _now())
        except StaleEpoch:
            with contextlib.suppress(Exception):  # the fence is the outcome; finalization removes strays
                self.models.delete_version(spec.tenant, spec.model, version)
            raise
        self._mirror(request, status=RequestStatus.COMPLETED.value, model_version=version)
        registered = (registered_model_name(spec.tenant, spec.model), version)
        self._describe(request, registered)
        if self._last_progress is not None and self.on_progress is not None:  # the bar's last word: the version
            done = dataclasses.replace(self._last_progress, registered=registered)
            self.background.submit("showing the registered version", self._while_current(
                functools.partial(self.on_progress, request, done)), key="progress")
        return version

    def _report(self, end: AttemptEnd, reason: str, resume_step: int) -> AttemptOutcome:
        try:
            self.store.report_attempt_end(self.lease, end, reason, _now())
        except StaleEpoch:
            return AttemptOutcome(None, "fenced", resume_step=resume_step)
        return AttemptOutcome(end, reason, resume_step=resume_step)

    def _mirror(self, request: TrainingRequest, **values: object) -> None:
        if request.mlflow_run_id:
            lease = self.lease
            self.background.submit(
                f"mirroring {', '.join(values)} into MLflow",
                self._while_current(functools.partial(self.checkpoints.mirror, request.mlflow_run_id,
                                                      worker_uuid=lease.worker_uuid, epoch=lease.epoch, **values)),
            )

    def _while_current(self, call: Callable[[], object]) -> Callable[[], None]:
        """``call``, run in the background only if no other worker has taken the request over by then.

        A mirror waits in line behind slower ones; if the epoch moved on meanwhile (a failover, a
        cancel), the successor's mirrors are the true ones and this one is dropped. Completing the
        request keeps the epoch, so this worker's own last mirrors still land.
        """
        def guarded() -> None:
            if self.store.get_request(self.lease.request_id).epoch == self.lease.epoch:
                call()

        return guarded


@dataclass
class _Watch:
    """What one attempt remembers between steps for people: its start, the latest metrics, the last display."""

    start_step: int
    started_at: float
    metrics: dict[str, float] | None = None
    measured_step: int = -1
    shown_at: float = -math.inf

    def measure(self, trainer: Trainer) -> dict[str, float]:
        """The metrics at the trainer's current step, measured once per step."""
        if self.measured_step != trainer.completed_steps or self.metrics is None:
            self.metrics, self.measured_step = trainer.evaluate(), trainer.completed_steps
        return dict(self.metrics)


class _Preempted(Exception):
    def __init__(self, step: int) -> None:
        super().__init__(f"preempted at step {step}")
        self.step = step
