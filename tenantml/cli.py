"""The `tenantml` command: thin. Parse, call a service, print; errors become exit codes.

Run as an operator it may act for any tenant (``--tenant T``); run with ``TENANTML_API_KEY`` it acts
as that key's tenant only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenantml.domain.names import check_tenant_name
from tenantml.domain.request import TrainingRequest
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.errors import InvalidRequest, NotFound, TenantmlError
from tenantml.bootstrap import Connection
from tenantml.settings import Settings, load_settings

__all__ = ["main"]

Handler = Callable[[argparse.Namespace, Settings], int]


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def acting_tenant(settings: Settings, connection: Connection, requested: str | None) -> str | None:
    """The tenant a command acts for: the API key's tenant, or any named one for an operator."""
    if settings.api_key is None:
        return requested
    tenant = connection.store.tenant_for_key(hash_api_key(settings.api_key.get_secret_value()))
    if tenant is None:
        raise InvalidRequest("TENANTML_API_KEY is not a known tenant key: check the key, or unset it to act as operator")
    if requested not in (None, tenant):
        raise NotFound(f"tenant {requested!r} is not visible with this API key")
    return tenant


def _required_tenant(settings: Settings, connection: Connection, requested: str | None) -> str:
    tenant = acting_tenant(settings, connection, requested)
    if tenant is None:
        raise InvalidRequest("name the tenant with --tenant T (or set TENANTML_API_KEY to a tenant's key)")
    return tenant


# -- platform ------------------------------------------------------------------------------
def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from tenantml.local.embedded import EmbeddedPlatform

    platform = EmbeddedPlatform(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    try:
        state = platform.start(serve_inference=not args.no_inference)
        print(f"tenantml is up in {time.monotonic() - started:.1f} s (home {state.home})")
        print(f"  Prefect UI:  {state.prefect_ui_url}")
        print(f"  MLflow UI:   {state.mlflow_tracking_uri}")
        if state.inference_url:
            print(f"  Inference:   {state.inference_url}")
        print("Ctrl-C stops everything.", flush=True)
        while not stop.wait(1.0):
            # without the fork server, launchers start flow runs themselves: slower, not fatal
            dead = [s.name for s in platform.services if not s.alive() and s.name != "fork-server"]
            if dead:
                print(f"stopping: {', '.join(dead)} exited; logs in {settings.home.resolve() / 'logs'}", file=sys.stderr)
                return 1
        return 0
    finally:
        platform.stop()
        print("tenantml stopped", flush=True)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from tenantml.local.status import platform_status

    status = platform_status(settings)
    if args.json:
        _print_json(status)
    else:
        for key, value in status.items():
            print(f"{key}: {value}")
    return 0 if status["healthy"] else 1


# -- tenants and datasets --------------------------------------------------------------------
def cmd_tenant_create(args: argparse.Namespace, settings: Settings) -> int:
    if settings.api_key is not None:
        raise InvalidRequest("creating tenants is an operator command: unset TENANTML_API_KEY")
    name = check_tenant_name(args.name)
    api_key = new_api_key()
    Connection(settings).store.add_tenant(name, hash_api_key(api_key), datetime.now(UTC))
    if args.json:
        _print_json({"tenant": name, "api_key": api_key})
    else:
        print(f"tenant {name} created; its API key (shown once): {api_key}")
    return 0


def cmd_tenant_list(args: argparse.Namespace, settings: Settings) -> int:
    connection = Connection(settings)
    tenants = [acting_tenant(settings, connection, None)] if settings.api_key else connection.store.list_tenants()
    _print_json(tenants) if args.json else print("\n".join(t for t in tenants if t))
    return 0


def cmd_dataset_add(args: argparse.Namespace, settings: Settings) -> int:
    connection = Connection(settings)
    tenant = _required_tenant(settings, connection, args.tenant)
    if not connection.store.tenant_exists(tenant):
        from tenantml.errors import UnknownTenant

        raise UnknownTenant(tenant)
    path = connection.storage.add(tenant, Path(args.file), args.name)
    relative = path.relative_to(connection.storage.prefix(tenant))
    _print_json({"tenant": tenant, "dataset": str(relative), "path": str(path)}) if args.json else print(relative)
    return 0


# -- training ------------------------------------------------------------------------------
def _parse_params(pairs: Sequence[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"invalid --param {pair!r}: write it as key=value")
        params[key] = value
    return params


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from tenantml.services.admission import Decision, TrainingOrder, submit_training

    connection = Connection(settings)
    tenant = _required_tenant(settings, connection, args.tenant)
    order = TrainingOrder(
        tenant, args.model, args.dataset, args.target, args.algorithm, _parse_params(args.param),
        args.force, args.idempotency_key, args.promotion,
    )
    prefect_api = connection.prefect_api_url  # fail before admitting anything if the platform is down
    admission = submit_training(connection.store, connection.storage, order)
    if admission.decision is Decision.ACCEPTED:
        from tenantml.adapters.orchestration import submit_master

        submit_master({"request_id": admission.request_id}, f"master:{admission.request_id}", prefect_api)
    result: dict[str, Any] = {"request_id": admission.request_id, "decision": admission.decision.value,
                              "message": admission.message}
    if args.wait:
        request = _wait_for(connection, admission.request_id, show_progress=not args.json)
        result.update(status=request.status.value, model_version=request.model_version, reason=request.reason)
        code = 1 if request.status.value == "failed" else 0
    else:
        code = 0
    if args.json:
        _print_json(result)
    else:
        print(admission.request_id if admission.decision is Decision.ACCEPTED else f"{admission.request_id} ({admission.message})")
        if args.wait:
            print(f"{result['status']}" + (f": version {result['model_version']}" if result.get("model_version") else "")
                  + (f" ({result['reason']})" if result.get("reason") else ""))
    return code


def _wait_for(connection: Connection, request_id: str, show_progress: bool, timeout_s: float = 3600) -> TrainingRequest:
    deadline = time.monotonic() + timeout_s
    while True:
        request = connection.store.get_request(request_id)
        if show_progress and sys.stderr.isatty():
            total = request.total_steps or 0
            print(f"\r{request.status.value:<10} step {request.step}/{total or '?'} attempts {len(request.attempts)}",
                  end="", file=sys.stderr, flush=True)
        if request.status.is_terminal:
            if show_progress and sys.stderr.isatty():
                print(file=sys.stderr)
            return request
        if time.monotonic() > deadline:
            raise TenantmlError(f"request {request_id} did not finish within {timeout_s:.0f} s")
        time.sleep(0.5)


def request_view(request: TrainingRequest) -> dict[str, Any]:
    from tenantml.services.history import attempt_rows

    return {
        "request_id": request.id,
        "tenant": request.tenant,
        "model": request.model,
        "algorithm": request.spec.algorithm,
        "status": request.status.value,
        "reason": request.reason,
        "step": request.step,
        "total_steps": request.total_steps,
        "epoch": request.epoch,
        "worker_uuid": request.worker_uuid,
        "worker_class": request.worker_class.value,
        "checkpoint_step": request.checkpoint.step if request.checkpoint else None,
        "model_version": request.model_version,
        "metrics": request.metrics,
        "mlflow_run_id": request.mlflow_run_id,
        "created_at": request.created_at,
        "finished_at": request.finished_at,
        "attempts": attempt_rows(request),
    }


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    connection = Connection(settings)
    tenant = acting_tenant(settings, connection, args.tenant)
    found = connection.store.list_requests(tenant=tenant, limit=args.limit)
    if args.json:
        _print_json([{k: v for k, v in request_view(r).items() if k != "attempts"} for r in found])
        return 0
    rows = [(r.id, r.tenant, r.model, r.status.value, f"{r.step}/{r.total_steps or '?'}", len(r.attempts),
             r.model_version or "", r.created_at.strftime("%Y-%m-%d %H:%M:%S")) for r in found]
    print(_table(rows, ["request", "tenant", "model", "status", "step", "attempts", "version", "created"]))
    return 0


def cmd_run_show(args: argparse.Namespace, settings: Settings) -> int:
    connection = Connection(settings)
    tenant = acting_tenant(settings, connection, None)
    view = request_view(connection.store.get_request(args.id, tenant=tenant))
    if args.json:
        _print_json(view)
        return 0
    for key, value in view.items():
        if key != "attempts":
            print(f"{key}: {value}")
    rows = [(a["attempt"], a["worker_uuid"], a["epoch"], a["worker_class"], a["end"] or "running", a["resume_step"],
             a["steps_redone"], a["reason"] or "") for a in view["attempts"]]
    print(_table(rows, ["#", "worker_uuid", "epoch", "class", "end", "resume", "redone", "reason"]))
    return 0


def cmd_run_move(args: argparse.Namespace, settings: Settings) -> int:
    connection = Connection(settings)
    connection.store.get_request(args.id, tenant=acting_tenant(settings, connection, None))
    connection.store.request_move(args.id, datetime.now(UTC))
    print(f"request {args.id}: move requested; the master starts a new worker from the last checkpoint")
    return 0


def cmd_run_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from tenantml.domain.request import AttemptEnd, RequestStatus

    connection = Connection(settings)
    request = connection.store.get_request(args.id, tenant=acting_tenant(settings, connection, None))
    if request.status.is_terminal:
        raise InvalidRequest(f"request {args.id} has already ended ({request.status.value})")
    connection.store.finish(request.id, request.epoch, RequestStatus.CANCELLED, datetime.now(UTC),
                            "cancelled by an operator", AttemptEnd.CANCELLED)
    print(f"request {args.id}: cancelled")
    return 0


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tenantml", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the embedded platform in the foreground (Ctrl-C stops it)")
    up.add_argument("--no-inference", action="store_true", help="do not start the inference service")
    up.set_defaults(handler=cmd_up)

    status = commands.add_parser("status", help="health and URLs of the running platform")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    tenant = commands.add_parser("tenant", help="manage tenants").add_subparsers(dest="tenant_command", required=True)
    create = tenant.add_parser("create", help="create a tenant and print its API key once")
    create.add_argument("name")
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=cmd_tenant_create)
    listing = tenant.add_parser("list", help="list tenants")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_tenant_list)

    dataset = commands.add_parser("dataset", help="tenant datasets").add_subparsers(dest="dataset_command", required=True)
    add = dataset.add_parser("add", help="copy a CSV or Parquet file into the tenant's storage")
    add.add_argument("--tenant")
    add.add_argument("--name", help="name inside the tenant's storage (default: the file's name)")
    add.add_argument("--json", action="store_true")
    add.add_argument("file")
    add.set_defaults(handler=cmd_dataset_add)

    train = commands.add_parser("train", help="submit a training request; prints the request id")
    train.add_argument("--tenant")
    train.add_argument("--model", required=True)
    train.add_argument("--dataset", required=True, help="path inside the tenant's storage")
    train.add_argument("--target", required=True, help="the column to predict")
    train.add_argument("--algorithm", required=True)
    train.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument("--promotion", default="always", help="'always', or 'if-better[:metric]'")
    train.add_argument("--idempotency-key")
    train.add_argument("--force", action="store_true", help="train even if data and parameters are unchanged")
    train.add_argument("--wait", action="store_true", help="wait for the training to end")
    train.add_argument("--json", action="store_true")
    train.set_defaults(handler=cmd_train)

    runs = commands.add_parser("runs", help="list training requests")
    runs.add_argument("--tenant")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=cmd_runs)

    run = commands.add_parser("run", help="one training request").add_subparsers(dest="run_command", required=True)
    show = run.add_parser("show", help="status and attempt history")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_run_show)
    move = run.add_parser("move", help="move a running training to another worker")
    move.add_argument("id")
    move.set_defaults(handler=cmd_run_move)
    cancel = run.add_parser("cancel", help="cancel a training")
    cancel.add_argument("id")
    cancel.set_defaults(handler=cmd_run_cancel)

    from tenantml import cli_models

    cli_models.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.handler is not cmd_up:  # find the running local platform's servers
            from tenantml.local.state import connected

            settings = connected(settings)
        return int(args.handler(args, settings))
    except InvalidRequest as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TenantmlError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
