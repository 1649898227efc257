"""`tenantml db upgrade|current`: the training metadata's schema (Alembic, its own version table)."""

from __future__ import annotations

import typer

from tenantml.cli.output import JsonOption, print_json
from tenantml.cli.session import Session, session
from tenantml.errors import InvalidRequest

__all__ = ["app"]

app = typer.Typer()
db_app = typer.Typer(help="The training metadata's schema: upgrade it, or show its revision.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _operator(current: Session) -> None:
    if current.api_key is not None:
        raise InvalidRequest("the metadata schema is the operator's: unset TENANTML_API_KEY")


@db_app.command("upgrade")
def upgrade(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Create or upgrade the schema to the newest revision (`tenantml up` does it on every start)."""
    current = session(ctx)
    _operator(current)
    before, after = current.connection.upgrade_schema()
    if as_json:
        print_json({"from": before, "to": after})
    elif before == after:
        print(f"the training metadata is at revision {after}, the newest")
    else:
        print(f"the training metadata went from revision {before or '(none)'} to {after}")


@db_app.command("current")
def show_current(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The schema's revision and the newest one; exits 1 if it needs `tenantml db upgrade`."""
    current = session(ctx)
    _operator(current)
    revision, head = current.connection.schema_revisions()
    if as_json:
        print_json({"current": revision, "head": head})
    else:
        print(f"current {revision or '(none)'}, newest {head}"
              + ("" if revision == head else ": run `tenantml db upgrade`"))
    if revision != head:
        raise typer.Exit(1)
