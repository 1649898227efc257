"""The attempt history of a request, as rows for tables (CLI, Prefect artifact, MLflow)."""

from __future__ import annotations

from datetime import datetime

from tenantml.domain.request import Attempt, RequestStatus, TrainingRequest

__all__ = ["attempt_rows", "attempt_table", "describe"]

_REASON_CHARS = 80


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


def _time(at: datetime | None) -> str:
    return at.strftime("%H:%M:%S") if at else ""


def _duration(attempt: Attempt) -> str:
    if attempt.ended_at is None:
        return ""
    seconds = (attempt.ended_at - (attempt.running_at or attempt.started_at)).total_seconds()
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _short(reason: str | None) -> str:
    text = " ".join((reason or "").split())
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def attempt_table(request: TrainingRequest) -> list[dict[str, object]]:
    """The attempt history for people: narrow columns, wall-clock times (UTC), short reasons.

    The Prefect UI shows a table artifact at its natural width; the full rows (``attempt_rows``)
    were about 3,000 px wide, so the outcome and the steps were off-screen.
    """
    rows = []
    for a in request.attempts:
        reached = a.end_step if a.end_step is not None else request.step
        rows.append({
            "#": a.number,
            "worker": a.worker_uuid[:8],
            "class": a.worker_class.value,
            "lease": a.epoch,
            "started": _time(a.running_at or a.started_at),
            "outcome": a.end.value if a.end else ("running" if a.running_at else "starting"),
            "reason": _short(a.reason),
            "steps": f"{a.resume_step} → {reached}",
            "redone": request.steps_redone(a),
            "took": _duration(a),
        })
    return rows


def describe(request: TrainingRequest) -> str:
    """The request's state in words people read right: "running (attempt 2, resumed at step 115)"
    rather than a status that says "resuming" for a whole attempt."""
    attempt = request.current_attempt
    status = request.status
    if status is RequestStatus.PENDING:
        return "pending (waiting for a worker)"
    if status is RequestStatus.WAITING:
        last = attempt.end.value if attempt and attempt.end else "ended"
        at = request.checkpoint.step if request.checkpoint else 0
        return f"waiting to resume at step {at} (attempt {len(request.attempts)} {last})"
    if status.is_working and attempt is not None:
        if attempt.running_at is None:
            return f"starting (attempt {attempt.number}, {attempt.worker_class.value})"
        resumed = f", resumed at step {attempt.resume_step}" if attempt.resume_step else ""
        return f"running (attempt {attempt.number}{resumed})"
    if status is RequestStatus.COMPLETED and request.model_version:
        return f"completed (version {request.model_version}, {len(request.attempts)} attempt" \
               f"{'' if len(request.attempts) == 1 else 's'})"
    return status.value
