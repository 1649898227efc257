"""`tenantml worker start`: this machine as a worker host of a platform whose servers run on another one."""

from __future__ import annotations

import signal
import socket
import threading
from typing import Annotated

import typer

from tenantml.domain.request import WorkerClass
from tenantml.local.worker_host import WorkerHost
from tenantml.settings import load_settings

__all__ = ["app"]

app = typer.Typer()
worker = typer.Typer(no_args_is_help=True, help="This machine's training workers, for servers on another host.")
app.add_typer(worker, name="worker")


@worker.command("start")
def start(
    worker_class: Annotated[WorkerClass, typer.Option("--class", help="The queue the workers take trainings from.")]
    = WorkerClass.SMALL,
    count: Annotated[int, typer.Option("--count", min=1, help="Workers to run on this host.")] = 1,
    name: Annotated[str | None, typer.Option("--name", help="This host's name in the workers' names "
                                                           "(default: the host name).")] = None,
) -> None:
    """Run training workers (and their fork server) in the foreground until Ctrl-C.

    Needs TENANTML_PREFECT__API_URL, TENANTML_MLFLOW__TRACKING_URI and TENANTML_DATABASE__URL (the server host's addresses), and PREFECT_API_AUTH_STRING, MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD (from the server host's credentials.env).

    The server host counts these workers' slots with TENANTML_PREFECT__REMOTE_SMALL_WORKERS (or _LARGE_WORKERS).
    """  # noqa: E501 - one line a paragraph: the help wraps it to the terminal
    host = WorkerHost(load_settings(), worker_class.value, count, name or socket.gethostname())
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        host.start()
        names = ", ".join(service.name for service in host.services)
        print(f"worker host {host.name} is up: {names}; Ctrl-C stops it", flush=True)
        host.run_until(stop)
    finally:
        host.stop()
    print(f"worker host {host.name} stopped", flush=True)
