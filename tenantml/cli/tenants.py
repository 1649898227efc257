"""`tenantml tenant ...` and `tenantml dataset add`: tenants, their keys and their datasets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from tenantml.cli.output import JsonOption, print_json
from tenantml.cli.session import TenantOption, session
from tenantml.errors import InvalidRequest
from tenantml.services import tenancy

__all__ = ["app"]

app = typer.Typer()
tenant_app = typer.Typer(help="Tenants: create one (its API key is shown once), list them, set a quota.",
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
    """Create a tenant and print its API key, once: only its SHA-256 is kept (operator only)."""
    current = session(ctx)
    api_key = tenancy.create_tenant(current.connection.store, name, datetime.now(UTC), current.api_key)
    if as_json:
        print_json({"tenant": name, "api_key": api_key})
    else:
        print(f"tenant {name} created; its API key (shown once): {api_key}")


@tenant_app.command("list")
def list_tenants(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The tenants (with a tenant's key: that tenant only)."""
    current = session(ctx)
    tenants = tenancy.list_tenants(current.connection.store, current.api_key)
    if as_json:
        print_json(tenants)
    else:
        print("\n".join(tenants))


@tenant_app.command("set-quota")
def set_quota(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The tenant.")],
    max_queued: Annotated[str, typer.Option(
        "--max-queued", metavar="N", help="Requests it may have waiting for a worker; 'none' for the default.")],
    as_json: JsonOption = False,
) -> None:
    """Set a tenant's quota: how many training requests it may have waiting (operator only)."""
    current = session(ctx)
    limit = tenancy.set_queue_limit(current.connection.store, name, _count(max_queued), current.api_key)
    default = current.settings.quotas.max_queued
    if as_json:
        print_json({"tenant": name, "max_queued": limit, "default_max_queued": default})
    else:
        shown = limit if limit is not None else f"the default ({default if default is not None else 'no limit'})"
        print(f"tenant {name}: at most {shown} requests waiting")


def _count(text: str) -> int | None:
    if text.strip().lower() in ("none", "default"):
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest(f"invalid --max-queued {text!r}: give a count of 0 or more, or 'none'") from None


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
    relative, path = tenancy.add_dataset(current.connection.store, current.connection.storage, acting, file, name)
    if as_json:
        print_json({"tenant": acting, "dataset": str(relative), "path": str(path)})
    else:
        print(relative)
