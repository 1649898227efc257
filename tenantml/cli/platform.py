"""`tenantml up` and `tenantml status`: the embedded local platform, the one part that imports tenantml.local."""

from __future__ import annotations

import signal
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
    """Start, then run until Ctrl-C or SIGTERM (0); always stop all. A server that exits meanwhile is
    started again by the platform's keeper, a worker by its provisioner (`tenantml status` counts both)."""
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
        while not stop.wait(1.0):  # a timed wait, so that the signal handlers run
            pass
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
    print_supervised(found.get("services") or {}, found.get("worker_restarts") or {})
    print_login(found.get("credentials_file"))


def _ago(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    seconds = max(now - at, 0.0)
    shown = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
    return f"{time.strftime('%H:%M:%S', time.localtime(at))} ({shown} ago)"


def print_supervised(services: dict[str, Any], worker_restarts: dict[str, int]) -> None:
    """Each kept server: pid, up since, restarts and how it last exited; the workers' replacements per class."""
    if not services:
        return
    now = time.time()
    rows: list[tuple[object, ...]] = []
    for name, record in services.items():
        last = record.get("last_exit")
        how = "-" if not last else f"{last['signal'] or 'exit code ' + str(last['code'])}, {_ago(last['at'], now)}"
        state = "restarting" if record.get("restarting") else "running" if record.get("alive") else "gone"
        rows.append((name, record["pid"], state, _ago(record.get("up_since"), now), record["restarts"], how))
    print_table(["supervised", "pid", "state", "up since", "restarts", "last exit"], rows)
    if worker_restarts:
        print("workers replaced after exiting: " + ", ".join(f"{c} {n}" for c, n in sorted(worker_restarts.items())))


def print_login(credentials: str | None) -> None:
    """How an operator logs in: the values are in the credentials file, never printed."""
    if not credentials:
        print("no credentials file yet: `tenantml up` makes one in the home")
        return
    print(f"credentials: {credentials} (mode 0600; the values are not shown here)")
    print("  Prefect UI: when it asks, paste the value of PREFECT_API_AUTH_STRING")
    print("  MLflow UI:  user MLFLOW_TRACKING_USERNAME, password MLFLOW_TRACKING_PASSWORD")
    print(f"  prefect or mlflow commands: set -a; . {credentials}; set +a")
