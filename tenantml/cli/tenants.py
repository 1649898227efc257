"""`tenantml tenant ...` and `tenantml dataset add`: tenants, their keys and their datasets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from tenantml.cli.output import JsonOption, print_json, print_table
from tenantml.cli.session import TenantOption, session
from tenantml.domain.tenant import Quota, check_quota_value
from tenantml.errors import InvalidRequest
from tenantml.services import tenancy
from tenantml.settings import QuotaSettings

__all__ = ["app"]

app = typer.Typer()
tenant_app = typer.Typer(help="Tenants: create one (its API key is shown once), list them, set their quotas.",
                         no_args_is_help=True)
dataset_app = typer.Typer(help="A tenant's datasets, kept under the tenant's own storage prefix.",
                          no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(dataset_app, name="dataset")


@tenant_app.command("create")
def create_tenant(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lowercase letters, digits and dashes.")],
    as_json: JsonOption = False,
) -> None:
    """Create a tenant and print its API key and MLflow login, once: only the key's SHA-256 is kept (operator only)."""
    from tenantml.cli.mlflow_login import mlflow_login_text, tenant_access

    current = session(ctx)
    api_key = tenancy.create_tenant(current.connection.store, name, datetime.now(UTC), current.api_key)
    access = tenant_access(current)  # its MLflow user and experiment, before any other user can claim the name
    login = None
    if access is not None:
        with access:
            access.sync([name])
            login = (access.url, f"tenant-{name}", access.set_password(name))
    if as_json:
        print_json({"tenant": name, "api_key": api_key, **({} if login is None else {
            "mlflow_url": login[0], "mlflow_username": login[1], "mlflow_password": login[2]})})
    else:
        print(f"tenant {name} created; its API key (shown once): {api_key}")
        if login is not None:
            print(mlflow_login_text(login[0], name, login[2]))


@tenant_app.command("list")
def list_tenants(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The tenants and their quotas (with a tenant's key: that tenant only)."""
    current = session(ctx)
    found = tenancy.quotas(current.connection.store, current.api_key)
    defaults = current.settings.quotas
    if as_json:
        print_json([_quota_json(name, quota, defaults) for name, quota in found.items()])
    else:
        print_table(["tenant", "max queued", "max running"], [
            [name, _limit(quota.max_queued, defaults.max_queued), _limit(quota.max_running, defaults.max_running)]
            for name, quota in found.items()
        ])


@tenant_app.command("set-quota")
def set_quota(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The tenant.")],
    max_queued: Annotated[str | None, typer.Option(
        "--max-queued", metavar="N",
        help="Requests it may have waiting; more are refused at submission. 'none' for the default.")] = None,
    max_running: Annotated[str | None, typer.Option(
        "--max-running", metavar="N",
        help="Trainings it may run at once on all classes; more wait for a slot. 'none' for the default.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Set a tenant's quotas: how many training requests it may have waiting, and running (operator only).

    Either option or both; a value the other option would refuse writes nothing.
    """
    if max_queued is None and max_running is None:
        raise InvalidRequest(
            "give --max-queued N, --max-running N or both (a count of 0 or more, or 'none' for the default)"
        )
    queued = None if max_queued is None else _count("--max-queued", max_queued)
    running = None if max_running is None else _count("--max-running", max_running)
    current = session(ctx)
    store = current.connection.store
    if max_queued is not None:
        tenancy.set_queue_limit(store, name, queued, current.api_key)
    if max_running is not None:
        tenancy.set_running_limit(store, name, running, current.api_key)
    quota = tenancy.quotas(store, current.api_key, name)[name]
    defaults = current.settings.quotas
    if as_json:
        print_json(_quota_json(name, quota, defaults))
    else:
        print(f"tenant {name}: at most {_limit(quota.max_queued, defaults.max_queued)} requests waiting, "
              f"{_limit(quota.max_running, defaults.max_running)} trainings running")


def _quota_json(name: str, quota: Quota, defaults: QuotaSettings) -> dict[str, object]:
    return {
        "tenant": name,
        "max_queued": quota.max_queued,
        "default_max_queued": defaults.max_queued,
        "max_running": quota.max_running,
        "default_max_running": defaults.max_running,
    }


def _limit(own: int | None, default: int | None) -> str:
    """The tenant's own limit, or which default applies."""
    if own is not None:
        return str(own)
    return f"the default ({default if default is not None else 'no limit'})"


def _count(option: str, text: str) -> int | None:
    """A count of 0 or more, or None for 'none' (the default): checked before anything is written."""
    if text.strip().lower() in ("none", "default"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise InvalidRequest(f"invalid {option} {text!r}: give a count of 0 or more, or 'none'") from None
    return check_quota_value(option, value)


@dataset_app.command("add")
def add_dataset(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A CSV or Parquet file.")],
    tenant: TenantOption = None,
    name: Annotated[str | None, typer.Option(help="Its name in the tenant's storage (default: the file's).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Copy a CSV or Parquet file into the tenant's storage; prints the name `train --dataset` takes."""
    current = session(ctx)
    acting = current.required_tenant(tenant)
    if current.tenant_api is not None:  # uploaded under a file name; the platform names the stored file
        stored = current.tenant_api.upload(file, name)
        if as_json:
            print_json({"tenant": acting, "dataset": stored["name"], "size": stored["size"]})
        else:
            print(stored["name"])
        return
    relative, path = tenancy.add_dataset(current.connection.store, current.connection.storage, acting, file, name)
    if as_json:
        print_json({"tenant": acting, "dataset": str(relative), "path": str(path)})
    else:
        print(relative)


@dataset_app.command("list")
def list_datasets(ctx: typer.Context, tenant: TenantOption = None, as_json: JsonOption = False) -> None:
    """The tenant's datasets: the names `train --dataset` takes, sizes, when each was written."""
    from tenantml.services import datasets

    current = session(ctx)
    acting = current.required_tenant(tenant)
    if current.tenant_api is not None:
        found = current.tenant_api.datasets()
    else:
        found = datasets.list_datasets(current.connection.storage, tenancy.existing(current.connection.store, acting))
    if as_json:
        print_json(found)
    else:
        print_table(["dataset", "bytes", "written"], [(d["name"], d["size"], d["modified_at"]) for d in found])


@dataset_app.command("delete")
def delete_dataset(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="The dataset's name, as `dataset list` shows it.")],
    tenant: TenantOption = None,
) -> None:
    """Delete a dataset that no waiting or running training reads."""
    from tenantml.services import datasets

    current = session(ctx)
    acting = current.required_tenant(tenant)
    if current.tenant_api is not None:
        current.tenant_api.delete_dataset(dataset)
    else:
        connection = current.connection
        datasets.delete_dataset(connection.store, connection.storage, tenancy.existing(connection.store, acting),
                                dataset)
    print(f"dataset {dataset} deleted")
