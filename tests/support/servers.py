"""Start the real Prefect and MLflow servers for tests, with the command lines `tenantml up` uses."""

from __future__ import annotations

import os
from pathlib import Path

from tenantml.local.processes import claim_port
from tenantml.local.servers import Server, mlflow_server, prefect_server

__all__ = ["RunningServer", "start_mlflow", "start_prefect"]

RunningServer = Server


def start_mlflow(folder: Path) -> RunningServer:
    """An MLflow server on a free port, its store, artifacts and log in ``folder``."""
    return mlflow_server(claim_port("MLflow server", 0), os.environ, folder, folder, folder).wait_ready()


def start_prefect(folder: Path) -> RunningServer:
    """A Prefect server on a free port, its home (SQLite) and log in ``folder``; none of our PREFECT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return prefect_server(claim_port("Prefect server", 0), env, folder, folder, folder).wait_ready()
