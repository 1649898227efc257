"""`tenantml usage`: what each tenant used over a window, for chargeback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from tenantml.cli.output import JsonOption, print_json, print_table
from tenantml.cli.session import TenantOption, session
from tenantml.domain.request import WorkerClass
from tenantml.services.usage import parse_window, tenant_usage

__all__ = ["app"]

app = typer.Typer()
OUTCOMES = ("completed", "failed", "cancelled", "skipped")


@app.command("usage")
def usage(
    ctx: typer.Context,
    tenant: TenantOption = None,
    window: Annotated[str, typer.Option(help="How far back: 90s, 15m, 24h, 7d.")] = "24h",
    as_json: JsonOption = False,
) -> None:
    """Worker-seconds by class, steps trained and redone, trainings by outcome (an operator sees every tenant)."""
    current = session(ctx)
    found = tenant_usage(current.connection.store, current.acting_tenant(tenant), parse_window(window),
                         datetime.now(UTC))
    if as_json:
        print_json([usage.as_dict() for usage in found])
        return
    classes = [worker_class.value for worker_class in WorkerClass]
    print_table(
        ["tenant", *(f"{c} worker-s" for c in classes), "steps", "redone", "attempts", *OUTCOMES],
        [(u.tenant, *(f"{u.worker_seconds.get(c, 0.0):.1f}" for c in classes), u.steps_trained, u.steps_redone,
          u.attempts, *(u.trainings.get(o, 0) for o in OUTCOMES)) for u in found],
    )
