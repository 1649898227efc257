"""`tenantml workers`: the training workers per class, as the provisioner last decided them."""

from __future__ import annotations

import sys

import typer

from tenantml.adapters.fleet_records import FleetRecord
from tenantml.cli.output import JsonOption, print_json, print_table
from tenantml.cli.session import session
from tenantml.errors import InvalidRequest
from tenantml.services.provisioner import summary

__all__ = ["app"]

app = typer.Typer()


@app.command("workers")
def workers(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Per worker class: workers now and desired, bounds, busy and draining, the last decision and its reason."""
    current = session(ctx)
    if current.api_key is not None:
        raise InvalidRequest("the workers are the operator's: unset TENANTML_API_KEY to see them")
    # The provisioner's table, read where the store reads the rest of the metadata.
    found = current.connection.store.fleet_records()
    if as_json:
        print_json([as_dict(record) for record in found])
        return
    if not found:
        print("no provisioner decision yet: the provisioner writes one a class every tick of `tenantml up`",
              file=sys.stderr)
        return
    print_table(
        ["class", "current", "desired", "min", "max", "busy", "draining", "restarts", "decided", "reason"],
        [(r.decision.worker_class, r.decision.current, r.decision.desired, r.decision.minimum, r.decision.maximum,
          r.decision.busy, r.draining, r.restarts, r.decision.at.strftime("%Y-%m-%d %H:%M:%S"), r.decision.reason)
         for r in found],
    )


def as_dict(record: FleetRecord) -> dict[str, object]:
    """A record as ``--json`` prints it: the decision's summary, with the fleet's drain and restarts."""
    return {
        **summary(record.decision),
        "draining": record.draining,
        "restarts": record.restarts,
        "changed_at": record.changed_at.isoformat() if record.changed_at else None,
    }
