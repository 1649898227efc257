"""The attempt history of a request, as rows for tables (CLI, Prefect artifact, MLflow), and the words and
links that tie one training's Prefect runs, MLflow run and registered version together."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote, urlsplit, urlunsplit

from tenantml.domain.names import registered_model_name
from tenantml.domain.request import Attempt, RequestStatus, TrainingRequest

__all__ = [
    "Links",
    "Progress",
    "attempt_rows",
    "attempt_table",
    "describe",
    "mlflow_links",
    "progress_text",
    "run_description",
    "web_root",
]

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


def web_root(url: str | None, strip: str = "") -> str | None:
    """The address of a server's web UI from its API address (``strip``: a path suffix such as ``/api``),
    without credentials; None for what is not a web server (a file store, SQLite)."""
    if not url or not url.startswith(("http://", "https://")):
        return None
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # never a password in a link people copy
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, host, path.removesuffix(strip) if strip else path, "", "")).rstrip("/")


@dataclass(frozen=True)
class Links:
    """Where people open a training's pages: the Prefect UI (its API address without ``/api``) and the MLflow UI."""

    prefect_ui: str | None = None
    mlflow_ui: str | None = None

    @classmethod
    def of(cls, prefect_api_url: str | None, mlflow_tracking_uri: str | None) -> Links:
        return cls(web_root(prefect_api_url, "/api"), web_root(mlflow_tracking_uri))

    def flow_run(self, flow_run_id: str | None) -> str | None:
        return f"{self.prefect_ui}/runs/flow-run/{flow_run_id}" if self.prefect_ui and flow_run_id else None

    def mlflow_run(self, experiment_id: str | None, run_id: str | None) -> str | None:
        """The run's page; without the experiment, the UI's ``#/runs/<id>``, which opens the same page."""
        if not (self.mlflow_ui and run_id):
            return None
        if not experiment_id:
            return f"{self.mlflow_ui}/#/runs/{run_id}"
        return f"{self.mlflow_ui}/#/experiments/{experiment_id}/runs/{run_id}"

    def model_version(self, name: str, version: str | None) -> str | None:
        return f"{self.mlflow_ui}/#/models/{quote(name, safe='')}/versions/{version}" if self.mlflow_ui and version else None


def mlflow_links(request: TrainingRequest, links: Links) -> str:
    """Markdown links to the request's MLflow run and registered version ("" if there is neither)."""
    found = []
    if run := links.mlflow_run(None, request.mlflow_run_id):
        found.append(_link("MLflow run", run))
    if request.model_version and (version := links.model_version(
            registered_model_name(request.spec.tenant, request.spec.model), request.model_version)):
        found.append(_link(f"registered version {request.model_version}", version))
    return " · ".join(found)


def _link(text: str, url: str | None) -> str:
    return f"[{text}]({url})" if url else text


def _attempt_words(attempt: Attempt) -> str:
    outcome = attempt.end.value if attempt.end else ("running" if attempt.running_at else "starting")
    return f"{attempt.number} on {attempt.worker_class.value} ({outcome})"


def run_description(request: TrainingRequest, links: Links, registered: tuple[str, str] | None = None) -> str:
    """The MLflow run's description (``mlflow.note.content``, markdown): what the training is, its attempts,
    each linked to its Prefect run, and the registered version (``registered``: model name, version)."""
    spec = request.spec
    attempts = request.attempts
    runs = [_link(f"attempt {a.number}", links.flow_run(a.flow_run_id)) for a in attempts]
    lines = [
        f"**{spec.tenant}/{spec.model}**: tenantml training request `{request.id}`",
        "",
        f"- Algorithm `{spec.algorithm}` on `{spec.dataset.rsplit('/', 1)[-1]}` (fingerprint "
        f"`{spec.dataset_fingerprint[:12]}`), target `{spec.target}`",
        f"- Attempts: {len(attempts)}" + (f" ({'; '.join(_attempt_words(a) for a in attempts)})" if attempts else ""),
        "- Prefect runs: " + (", ".join(runs) if runs else "none yet")
        + f"; in the Prefect UI, filter flow runs by tag `request:{request.id}`",
    ]
    if registered is not None:
        name, version = registered
        lines.append(f"- Registered: {_link(f'{name} version {version}', links.model_version(name, version))}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Progress:
    """Where one attempt is: what the progress artifact shows."""

    step: int
    total: int
    attempt: int
    worker_class: str
    resume_step: int = 0
    eta_s: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    registered: tuple[str, str] | None = None  # (registered model, version), once the training has one

    @property
    def percent(self) -> float:
        return 100.0 * self.step / max(self.total, 1)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def progress_text(request: TrainingRequest, progress: Progress, links: Links, experiment_id: str | None = None) -> str:
    """The progress artifact's description (markdown): step/total, attempt, ETA, the latest metrics, links."""
    resumed = f", resumed at step {progress.resume_step}" if progress.resume_step else ""
    shown = {k: v for k, v in progress.metrics.items() if k.startswith("validation_")} or dict(progress.metrics)
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items())) or "none yet"
    mlflow = links.mlflow_run(experiment_id, request.mlflow_run_id)
    lines = [
        f"**{request.spec.tenant}/{request.spec.model}**: step {progress.step} of {progress.total} "
        f"({progress.percent:.0f}%), attempt {progress.attempt} on {progress.worker_class}{resumed}",
        "",
        f"- ETA: {'done' if progress.step >= progress.total else _eta(progress.eta_s)}",
        f"- Latest metrics: {metrics}",
        f"- Request `{request.id}`" + (f"; {_link('MLflow run', mlflow)}" if mlflow else ""),
    ]
    if progress.registered is not None:
        name, version = progress.registered
        lines.append(f"- Registered: {_link(f'{name} version {version}', links.model_version(name, version))}")
    return "\n".join(lines)
