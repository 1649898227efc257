"""The attempt history of a request, as rows for tables (CLI, Prefect artifact, MLflow)."""

from __future__ import annotations

from tenantml.domain.request import TrainingRequest

__all__ = ["attempt_rows"]


def attempt_rows(request: TrainingRequest) -> list[dict[str, object]]:
    return [
        {
            "attempt": a.number,
            "worker_uuid": a.worker_uuid,
            "epoch": a.epoch,
            "worker_class": a.worker_class.value,
            "started_at": a.started_at.isoformat(),
            "running_at": a.running_at.isoformat() if a.running_at else None,
            "ended_at": a.ended_at.isoformat() if a.ended_at else None,
            "end": a.end.value if a.end else None,
            "reason": a.reason,
            "resume_step": a.resume_step,
            "end_step": a.end_step,
            "steps_redone": request.steps_redone(a),
        }
        for a in request.attempts
    ]
