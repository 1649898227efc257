"""`tenantml tenant disable|enable|rotate-key|delete|mlflow-login|mlflow-sync`: the operator's lifecycle
commands (see :mod:`tenantml.services.lifecycle`), added to the `tenant` group of
:mod:`tenantml.cli.tenants`.

The MLflow side needs MLflow's admin, whose password is in the home's credentials file (0600): only
the operator on the platform host can run these. A platform without that file (MLflow without auth)
has no tenant users, and the commands change only the database and the storage.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from tenantml.cli.output import JsonOption, print_json
from tenantml.cli.session import Session, session
from tenantml.cli.mlflow_login import mlflow_login_text, tenant_access
from tenantml.cli.tenants import tenant_app
from tenantml.errors import InvalidRequest
from tenantml.services import lifecycle

__all__: list[str] = []  # commands only, on the `tenant` group

if TYPE_CHECKING:  # without importing the admin client at start
    from tenantml.adapters.mlflow_tenants import TenantAccess

NameArgument = Annotated[str, typer.Argument(help="The tenant.")]


@tenant_app.command("disable")
def disable(ctx: typer.Context, name: NameArgument, as_json: JsonOption = False) -> None:
    """Disable a tenant: its keys and MLflow login are refused, nothing of it starts, running trainings
    stop at a checkpoint and wait (operator only)."""
    current = session(ctx)
    access = tenant_access(current)
    try:
        asked = lifecycle.disable_tenant(current.connection.store, name, datetime.now(UTC), access, current.api_key)
    finally:
        if access is not None:
            access.close()
    if as_json:
        print_json({"tenant": name, "disabled": True, "stopping": asked})
    else:
        print(f"tenant {name} disabled: its keys are refused (within 30 s where they were cached), its MLflow "
              f"login ends, its queued requests wait; {len(asked)} running training(s) asked to stop at a checkpoint")


@tenant_app.command("enable")
def enable(ctx: typer.Context, name: NameArgument, as_json: JsonOption = False) -> None:
    """Enable a disabled tenant again: its keys work, its requests are scheduled, its MLflow user gets a
    new password, shown once (operator only)."""
    current = session(ctx)
    access = tenant_access(current)
    try:
        password = lifecycle.enable_tenant(current.connection.store, name, access, current.api_key)
    finally:
        if access is not None:
            access.close()
    if as_json:
        print_json({"tenant": name, "disabled": False, "mlflow_password": password})
        return
    print(f"tenant {name} enabled")
    if password is not None and access is not None:
        print(mlflow_login_text(access.url, name, password))


@tenant_app.command("rotate-key")
def rotate_key(ctx: typer.Context, name: NameArgument, as_json: JsonOption = False) -> None:
    """Give a tenant a new API key, shown once; the old one is refused at once by the database and within
    30 s (the key cache TTL) by the inference service and the tenant API (operator only)."""
    current = session(ctx)
    key = lifecycle.rotate_key(current.connection.store, name, current.api_key)
    if as_json:
        print_json({"tenant": name, "api_key": key, "old_key_refused_within_s": 30})
    else:
        print(f"tenant {name}: its new API key (shown once): {key}\nthe old key is refused within 30 s")


@tenant_app.command("delete")
def delete(
    ctx: typer.Context, name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete a tenant and everything of it: requests, datasets, MLflow runs, checkpoints, registered
    models, its MLflow user and its key (operator only; asks first unless --yes)."""
    current = session(ctx)
    if current.api_key is not None:
        raise InvalidRequest("deleting a tenant is an operator command: unset TENANTML_API_KEY")
    if not yes and not typer.confirm(f"delete tenant {name} with all its datasets, runs, checkpoints and models?"):
        raise InvalidRequest(f"tenant {name} not deleted: confirm, or pass --yes")
    connection = current.connection
    access = tenant_access(current)
    try:
        found = lifecycle.delete_tenant(connection.store, connection.storage, name, datetime.now(UTC), access)
    finally:
        if access is not None:
            access.close()
    report = {"tenant": name, "requests": found.requests, "cancelled": found.cancelled,
              "datasets": found.datasets, **found.mlflow}
    if as_json:
        print_json(report)
    else:
        print(f"tenant {name} deleted: " + ", ".join(f"{value} {kind.replace('_', ' ')}"
                                                    for kind, value in report.items() if kind != "tenant"))


@tenant_app.command("mlflow-login")
def mlflow_login(ctx: typer.Context, name: NameArgument, as_json: JsonOption = False) -> None:
    """Give a tenant's MLflow user a new password, shown once, and print how it logs into the MLflow UI
    (operator only)."""
    current = session(ctx)
    if current.api_key is not None:
        raise InvalidRequest("MLflow logins are handed out by the operator: unset TENANTML_API_KEY")
    from tenantml.services import tenancy

    store = current.connection.store
    tenancy.existing(store, name)
    if name in store.disabled_tenants():
        raise InvalidRequest(f"tenant {name!r} is disabled: run `tenantml tenant enable {name}` first")
    access = _required_access(current)
    with access:
        access.sync([name])
        password = access.set_password(name)
    if as_json:
        print_json({"tenant": name, "mlflow_url": access.url, "username": f"tenant-{name}", "password": password})
    else:
        print(mlflow_login_text(access.url, name, password))


@tenant_app.command("mlflow-sync")
def mlflow_sync(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Make every tenant's MLflow grants exact: READ on its experiment and models, nothing else; revokes
    what a tenant user created under another tenant's name (operator only; `tenantml up` runs it too)."""
    current = session(ctx)
    if current.api_key is not None:
        raise InvalidRequest("MLflow grants are the operator's: unset TENANTML_API_KEY")
    access = _required_access(current)
    with access:
        store = current.connection.store
        report = access.sync(sorted(set(store.list_tenants()) - store.disabled_tenants()))
    if as_json:
        print_json({"granted": report.granted, "revoked": report.revoked, "users_created": report.users_created})
    else:
        print(f"{len(report.granted)} grant(s) added, {len(report.revoked)} revoked, "
              f"{len(report.users_created)} tenant user(s) created")
        for line in report.revoked:
            print(f"  revoked {line}")


def _required_access(current: Session) -> TenantAccess:
    access = tenant_access(current)
    if access is None:
        raise InvalidRequest(f"no credentials file in {current.settings.home}: MLflow runs without auth here, "
                             "so there are no tenant MLflow users; start the platform with `tenantml up`")
    return access
