"""`tenantml train`, `tenantml runs` and `tenantml run ...`: training requests, from admission to the end."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from tenantml.cli.output import JsonOption, format_metrics, print_json, print_table, progress_bar
from tenantml.cli.session import Session, TenantOption, session
from tenantml.domain.admission import Decision
from tenantml.domain.request import RequestStatus, TrainingRequest
from tenantml.errors import InvalidRequest
from tenantml.services.history import describe
from tenantml.ports import RequestStore
from tenantml.services import trainings

__all__ = ["app", "parse_params"]

app = typer.Typer()
run_app = typer.Typer(help="One training request: show it, move it to another worker, cancel it.",
                      no_args_is_help=True)
app.add_typer(run_app, name="run")

WAIT_TIMEOUT_S = 3600.0
RequestId = Annotated[str, typer.Argument(metavar="ID", help="The request id, as `tenantml train` printed it.")]


def parse_params(pairs: Sequence[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"invalid --param {pair!r}: write it as key=value")
        params[key] = value
    return params


@app.command()
def algorithms(as_json: JsonOption = False) -> None:
    """Each algorithm `train` accepts, with its parameters, their defaults and allowed values.

    Example: tenantml train --algorithm mlp_classifier --param hidden_layer_sizes=64,32 --param epochs=20 ...
    """
    from tenantml.ml.algorithms import ALGORITHMS  # scikit-learn: 1 s, for this command only

    listed: dict[str, list[dict[str, Any]]] = {
        name: [{"name": key, "default": list(param.default) if isinstance(param.default, tuple) else param.default,
                "allowed": param.describe()} for key, param in trainer.PARAMS.items()]
        for name, trainer in ALGORITHMS.items()
    }
    if as_json:
        print_json([{"algorithm": name, "parameters": params} for name, params in listed.items()])
        return
    rows = [(name if i == 0 else "", p["name"], _shown(p["default"]), p["allowed"])
            for name, params in listed.items() for i, p in enumerate(params)]
    print_table(["algorithm", "parameter", "default", "allowed"], rows)


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


@app.command()
def train(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="The model's name; each training registers a version of it.")],
    dataset: Annotated[str, typer.Option(help="A path inside the tenant's storage (see `dataset add`).")],
    target: Annotated[str, typer.Option(help="The column to predict.")],
    algorithm: Annotated[str, typer.Option(
        help="sgd_classifier, sgd_regressor, mlp_classifier, hist_gradient_boosting_classifier or "
        "random_forest_classifier; `tenantml algorithms` lists each one's parameters.")],
    tenant: TenantOption = None,
    param: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help="An algorithm parameter; repeat it.")]
    = None,
    promotion: Annotated[str, typer.Option(help="'always', or 'if-better[:metric]'.")] = "always",
    idempotency_key: Annotated[str | None, typer.Option(help="Submitting the same key again submits nothing.")]
    = None,
    force: Annotated[bool, typer.Option("--force", help="Train even if data and parameters are unchanged.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for it to end (Ctrl-C stops waiting only).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Submit a training request and print its id; with --wait, also how it ended (exit 1 if it failed)."""
    current = session(ctx)
    if current.tenant_api is not None:
        current.required_tenant(tenant)
        answer = current.tenant_api.submit(
            model=model, dataset=dataset, target=target, algorithm=algorithm, params=parse_params(param or []),
            force=force, idempotency_key=idempotency_key, promotion=promotion)
        _report(answer, as_json, lambda request_id: _follow_remote(current, request_id, not as_json) if wait else None)
        return
    from tenantml.services.admission import (  # scikit-learn: 1 s, for train only
        SubmissionLimits,
        TrainingOrder,
        submit_training,
    )

    connection = current.connection
    order = TrainingOrder(
        tenant=current.required_tenant(tenant), model=model, dataset=dataset, target=target, algorithm=algorithm,
        params=parse_params(param or []), force=force, idempotency_key=idempotency_key, promotion=promotion,
    )
    admission = submit_training(connection.store, connection.storage, order,
                                limits=SubmissionLimits.from_settings(current.settings))
    if admission.decision is Decision.ACCEPTED and (silence := trainings.supervisor_silence(connection.store)):
        print(f"warning: {silence}; the request waits in the queue until one runs", file=sys.stderr)
    result: dict[str, Any] = {"request_id": admission.request_id, "decision": admission.decision.value,
                              "message": admission.message}

    def ended(request_id: str) -> dict[str, Any]:
        request = wait_with_progress(connection.store, request_id, show_progress=not as_json)
        return {"status": request.status.value, "model_version": request.model_version, "reason": request.reason}

    _report(result, as_json, ended if wait else lambda _: None)


def _report(result: dict[str, Any], as_json: bool, wait: Callable[[str], dict[str, Any] | None]) -> None:
    """Print the admission; if ``wait`` gives how the request ended, that too (exit 1 if it failed)."""
    if not as_json:
        accepted = result["decision"] == Decision.ACCEPTED.value
        print(result["request_id"] if accepted else f"{result['request_id']} ({result['message']})", flush=True)
    end = wait(result["request_id"])
    if end is not None:
        result.update(end)
    if as_json:
        print_json(result)
    elif end is not None:
        print(result["status"] + (f": version {result['model_version']}" if result["model_version"] else "")
              + (f" ({result['reason']})" if result["reason"] else ""))
    if end is not None and result["status"] == RequestStatus.FAILED.value:
        raise typer.Exit(1)


def _follow_remote(current: Session, request_id: str, show_progress: bool) -> dict[str, Any]:
    """`train --wait` in tenant mode: the tenant API's progress events, until the end."""
    assert current.tenant_api is not None
    with progress_bar(enabled=show_progress) as show:
        view = current.tenant_api.follow(
            request_id, lambda p: show(p["status"], p["step"], p["total_steps"], p["attempt"]), WAIT_TIMEOUT_S)
    return {"status": view["status"], "model_version": view["model_version"], "reason": view["reason"]}


def wait_with_progress(store: RequestStore, request_id: str, show_progress: bool) -> TrainingRequest:
    with progress_bar(enabled=show_progress) as show:
        return trainings.wait_for_request(
            store, request_id, WAIT_TIMEOUT_S,
            lambda request: show(describe(request), request.step, request.total_steps, len(request.attempts)),
        )


@app.command()
def runs(
    ctx: typer.Context,
    tenant: TenantOption = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Training requests, newest first (an operator sees every tenant's unless --tenant names one)."""
    current = session(ctx)
    if current.tenant_api is not None:
        current.acting_tenant(tenant)
        views = current.tenant_api.trainings(limit)
    else:
        views = trainings.list_requests(current.connection.store, current.acting_tenant(tenant), limit)
    if as_json:
        print_json([{key: value for key, value in view.items() if key != "attempts"} for view in views])
        return
    rows = [(v["request_id"], v["tenant"], v["model"], v["status"], f"{v['step']}/{v['total_steps'] or '?'}",
             len(v["attempts"]), v["model_version"], v["created_at"].strftime("%Y-%m-%d %H:%M:%S")) for v in views]
    print_table(["request", "tenant", "model", "status", "step", "attempts", "version", "created"], rows)


@run_app.command("show")
def show_run(ctx: typer.Context, request_id: RequestId, as_json: JsonOption = False) -> None:
    """Status and attempt history: worker UUID, class, how each attempt ended, where it resumed."""
    current = session(ctx)
    if current.tenant_api is not None:
        view = current.tenant_api.training(request_id)
    else:
        view = trainings.show_request(current.connection.store, request_id, current.acting_tenant())
    if as_json:
        print_json(view)
        return
    for key, value in view.items():
        if key == "metrics":
            print(f"metrics: {format_metrics(value) or '-'}")
        elif key != "attempts":
            print(f"{key}: {'-' if value is None else value}")
    rows = [(a["attempt"], a["worker_uuid"], a["epoch"], a["worker_class"], a["end"] or "running", a["resume_step"],
             a["steps_redone"], a["reason"]) for a in view["attempts"]]
    print_table(["#", "worker_uuid", "epoch", "class", "end", "resume", "redone", "reason"], rows)


@run_app.command("move")
def move_run(ctx: typer.Context, request_id: RequestId) -> None:
    """Move a running training to another worker; it resumes from its last checkpoint."""
    current = session(ctx)
    trainings.move_request(current.connection.store, request_id, current.acting_tenant(), datetime.now(UTC))
    print(f"request {request_id}: move requested; the master starts a new worker from the last checkpoint")


@run_app.command("cancel")
def cancel_run(ctx: typer.Context, request_id: RequestId) -> None:
    """Cancel a training that has not ended; its worker is fenced off at its next write."""
    current = session(ctx)
    if current.tenant_api is not None:
        current.tenant_api.cancel(request_id)
    else:
        trainings.cancel_request(current.connection.store, request_id, current.acting_tenant(), datetime.now(UTC))
    print(f"request {request_id}: cancelled")
