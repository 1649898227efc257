"""Start the real Prefect and MLflow servers for tests, with the command lines `tenantml up` uses."""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path
from typing import Any

import httpx

from tenantml.local.processes import claim_port
from tenantml.local.servers import Server, mlflow_server, prefect_server

__all__ = ["RunningServer", "prefect_post", "start_mlflow", "start_prefect"]

RunningServer = Server


def start_mlflow(folder: Path) -> RunningServer:
    """An MLflow server on a free port, its store, artifacts and log in ``folder``."""
    return mlflow_server(claim_port("MLflow server", 0), os.environ, folder, folder, folder).wait_ready()


def start_prefect(folder: Path) -> RunningServer:
    """A Prefect server on a free port, its home (SQLite) and log in ``folder``; none of our PREFECT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return prefect_server(claim_port("Prefect server", 0), env, folder, folder, folder).wait_ready()


def prefect_post(api_url: str, path: str, body: dict[str, Any], auth_string: str | None = None) -> httpx.Response:
    """A raw POST to a Prefect API as Prefect's own client sends it: basic auth if given, and a CSRF
    token (our servers run with CSRF protection on)."""
    headers = {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()} if auth_string else {}
    client = str(uuid.uuid4())
    token = httpx.get(f"{api_url}/csrf-token", params={"client": client}, headers=headers, timeout=10)
    token.raise_for_status()
    headers.update({"Prefect-Csrf-Token": token.json()["token"], "Prefect-Csrf-Client": client})
    return httpx.post(f"{api_url}{path}", json=body, headers=headers, timeout=10)
