"""What the master does once a request has ended: promote, close the MLflow run, prune checkpoints.

Idempotent, so that a restarted master can run it again safely.
"""

from __future__ import annotations

import logging

from tenantml.domain.promotion import PromotionPolicy
from tenantml.domain.request import RequestStatus, TrainingRequest
from tenantml.ports import ModelRegistry, RunTracking

__all__ = ["Completion"]

log = logging.getLogger(__name__)

_PRUNED = frozenset({RequestStatus.COMPLETED, RequestStatus.FAILED, RequestStatus.CANCELLED})


class Completion:
    def __init__(self, tracking: RunTracking, registry: ModelRegistry, checkpoint_retention: int) -> None:
        self.tracking, self.registry, self.retention = tracking, registry, checkpoint_retention

    def finalize(self, request: TrainingRequest) -> None:
        run_id = request.mlflow_run_id
        self.remove_strays(request)
        if request.status is RequestStatus.COMPLETED and request.model_version:
            self.promote(request)
        if run_id:
            self.tracking.mirror(run_id, status=request.status.value, reason=request.reason or "")
            if not self.tracking.run_is_terminated(run_id):
                self.tracking.end_run(run_id, request.status.value)
            if request.status in _PRUNED:  # failed and cancelled trainings kept every checkpoint before
                self.tracking.prune_checkpoints(run_id, request.checkpoint, self.retention)

    def remove_strays(self, request: TrainingRequest) -> None:
        """Exactly one version per request: delete any a replaced worker registered before it was fenced."""
        if request.status not in (RequestStatus.COMPLETED, RequestStatus.FAILED, RequestStatus.CANCELLED):
            return
        for version in self.registry.versions_for_request(request.tenant, request.model, request.id):
            if version != request.model_version:
                log.warning("request %s: deleting stray version %s of %s.%s", request.id, version,
                            request.tenant, request.model)
                self.registry.delete_version(request.tenant, request.model, version)

    def promote(self, request: TrainingRequest) -> None:
        tenant, model, version = request.tenant, request.model, request.model_version or ""
        champion = self.registry.champion(tenant, model)
        if champion is not None and int(champion) >= int(version):
            return  # already served, or a newer request got there first
        champion_metrics = None
        if champion is not None:
            champion_metrics = self.registry.version_metrics(tenant, model, champion)
        promote, why = PromotionPolicy.parse(request.spec.promotion).decide(request.metrics, champion_metrics)
        log.info("request %s, %s.%s v%s: %s", request.id, tenant, model, version, why)
        if promote:
            self.registry.set_champion(tenant, model, version)
        if request.mlflow_run_id:
            self.tracking.mirror(request.mlflow_run_id, promotion=why)
