"""`tenantml up` and `tenantml status`: the embedded local platform, the one part that imports tenantml.local."""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Annotated, Any

import typer

from tenantml.cli.output import JsonOption, print_json, print_table
from tenantml.cli.session import session
from tenantml.local.credentials import credentials_file
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.local.status import platform_status
from tenantml.settings import Settings

__all__ = ["app"]

app = typer.Typer()

OPTIONAL_SERVICES = frozenset({"fork-server"})
"""Without the fork server, launchers start flow runs themselves: slower, not fatal."""


@app.command()
def up(
    ctx: typer.Context,
    no_inference: Annotated[bool, typer.Option("--no-inference", help="Do not start the inference service.")] = False,
) -> None:
    """Start the local platform in the foreground: Prefect, MLflow, workers, inference. Ctrl-C stops everything."""
    code = run_platform(session(ctx).settings, serve_inference=not no_inference)
    if code:
        raise typer.Exit(code)


def run_platform(settings: Settings, serve_inference: bool) -> int:
    """Start, then watch until Ctrl-C or SIGTERM (0), or until a service dies (1); always stop all."""
    platform = EmbeddedPlatform(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    try:
        state = platform.start(serve_inference=serve_inference)
        print(f"tenantml is up in {time.monotonic() - started:.1f} s (home {state.home})")
        print(f"  Prefect UI:  {state.prefect_ui_url}")
        print(f"  MLflow UI:   {state.mlflow_tracking_uri}")
        if state.inference_url:
            print(f"  Inference:   {state.inference_url}")
        if state.tenant_api_url:
            print(f"  Tenant API:  {state.tenant_api_url} (docs: {state.tenant_api_url}/docs)")
        print_login(str(credentials_file(settings.home)))
        print("Ctrl-C stops everything.", flush=True)
        while not stop.wait(1.0):
            dead = [s.name for s in platform.services if not s.alive() and s.name not in OPTIONAL_SERVICES]
            if dead:
                print(f"stopping: {', '.join(dead)} exited; logs in {settings.home.resolve() / 'logs'}",
                      file=sys.stderr)
                return 1
        return 0
    finally:
        platform.stop()
        print("tenantml stopped", flush=True)


@app.command()
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Health and addresses of the running platform; exits 1 unless it is healthy."""
    found = platform_status(session(ctx).settings)
    if as_json:
        print_json(found)
    else:
        print_status(found)
    if not found["healthy"]:
        raise typer.Exit(1)


def print_status(found: dict[str, Any]) -> None:
    if found["healthy"]:
        print(f"tenantml is up (home {found['home']})")
    else:
        print(f"tenantml is not healthy (home {found['home']}): start it with `tenantml up`, or see its logs")
    components, workers = found["components"], found["workers"]

    def state(name: str) -> str:
        return "-" if name not in components else "up" if components[name] else "down"

    rows: list[tuple[str, str, object]] = [
        ("prefect", state("prefect"), found["prefect_api_url"]),
        ("prefect ui", "", found["prefect_ui_url"]),
        ("mlflow", state("mlflow"), found["mlflow_tracking_uri"]),
        ("inference", state("inference"), found["inference_url"]),
    ]
    rows += [(name, "running" if alive else "gone", "") for name, alive in sorted(workers.items())]
    print_table(["service", "state", "address"], rows)
    print_login(found.get("credentials_file"))


def print_login(credentials: str | None) -> None:
    """How an operator logs in: the values are in the credentials file, never printed."""
    if not credentials:
        print("no credentials file yet: `tenantml up` makes one in the home")
        return
    print(f"credentials: {credentials} (mode 0600; the values are not shown here)")
    print("  Prefect UI: when it asks, paste the value of PREFECT_API_AUTH_STRING")
    print("  MLflow UI:  user MLFLOW_TRACKING_USERNAME, password MLFLOW_TRACKING_PASSWORD")
    print(f"  prefect or mlflow commands: set -a; . {credentials}; set +a")
