"""The ``tenantml`` command: a Typer app, one module per noun, each command calling a service.

``platform`` (up, status), ``tenants`` (tenant, dataset), ``training`` (train, runs, run),
``models`` (model, predict), ``usage``, ``workers``, ``worker_host`` (worker start) and ``database`` (db) hold the commands; ``output`` prints; ``session`` gives a command its
settings and connection. :func:`main` runs one command and turns tenantml's errors into exit
codes: 2 for a request that can never work, 1 for anything else that went wrong, 130 for Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from tenantml.cli import database, models, platform, tenants, training, usage, worker_host, workers
from tenantml.cli import tenant_lifecycle  # noqa: F401  (its commands join the `tenant` group)
from tenantml.cli.session import Session
from tenantml.errors import InvalidRequest, TenantmlError
from tenantml.local.state import connected
from tenantml.settings import Settings, load_settings

__all__ = ["app", "main"]

HELP = "\n\n".join([  # one line a paragraph: the help wraps it to the terminal
    "tenantml trains machine-learning models for many tenants on Prefect and MLflow, resumably (a training moves to "
    "another worker from its last checkpoint), and serves each tenant's champion model over HTTP with BentoML.",
    "Start the local platform with `tenantml up`. Run as an operator, a command may act for any tenant (--tenant T); "
    "run with TENANTML_API_KEY set to a tenant's key, it acts as that tenant only.",
])

app = typer.Typer(name="tenantml", help=HELP, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
for part in (platform, tenants, training, models, usage, workers, worker_host, database):
    app.add_typer(part.app)


@app.callback()
def _session(ctx: typer.Context) -> None:
    # Every command but `up` looks for the running local platform's servers where settings name none.
    ctx.obj = Session(load_settings if ctx.invoked_subcommand == "up" else _connected_settings)


def _connected_settings() -> Settings:
    return connected(load_settings())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command (``argv``, default the process's arguments); returns its exit code.

    Typer shows usage errors (exit 2) and turns Ctrl-C into 130; tenantml's own errors come out of
    the command and are printed here as one line, ``error: <what was wrong and what to do>``.
    """
    try:
        typer.main.get_command(app).main(args=None if argv is None else list(argv), prog_name="tenantml")
        code = 0  # not reached: in standalone mode a command always ends in SystemExit
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    except InvalidRequest as err:
        code = _failed(err, 2)
    except TenantmlError as err:
        code = _failed(err, 1)
    except KeyboardInterrupt:
        code = 130
    return code if _flushed() else 1


def _failed(err: TenantmlError, code: int) -> int:
    print(f"error: {err}", file=sys.stderr)
    return code


def _flushed() -> bool:
    """Flush stdout; if its reader went away (`tenantml runs | head`), point it at /dev/null instead.

    Without that the interpreter's own last flush fails again at exit, with a traceback.
    """
    stdout = sys.__stdout__
    try:
        sys.stdout.flush()
        if stdout is not None:
            stdout.flush()
    except BrokenPipeError:
        if stdout is not None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return False
    return True
