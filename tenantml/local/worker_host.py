"""A worker host: training workers on a machine of their own, for servers that run on another one.

``tenantml up`` on the server host (with ``TENANTML_BIND_HOST`` an address the worker hosts reach)
runs Prefect, MLflow, the training supervisor and the masters' worker. A worker host runs only what
:class:`tenantml.local.workers.LocalWorkers` runs on the server host for one worker class: ``prefect
worker`` processes on the training pool's queue, and the flow-run fork server. It is given nothing
but the servers' addresses and the platform's client credentials:

- ``TENANTML_PREFECT__API_URL``, ``TENANTML_MLFLOW__TRACKING_URI``, ``TENANTML_DATABASE__URL``;
- ``PREFECT_API_AUTH_STRING``, ``MLFLOW_TRACKING_USERNAME``, ``MLFLOW_TRACKING_PASSWORD`` (the values
  of the same names in the server host's ``credentials.env``; not the MLflow admin's).

Its own ``TENANTML_HOME`` holds its ``PREFECT_HOME``, logs and the fork server's socket. Datasets are
read from ``$TENANTML_HOME/datasets``: until they are in shared storage, that folder must be the
server host's (a shared mount). A worker that exits by itself is replaced, as on the server host.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tenantml.errors import InvalidSetting, ServiceUnavailable
from tenantml.local import fork_server
from tenantml.local.embedded import check_home, platform_env
from tenantml.local.processes import Service, stop_services
from tenantml.local.project import project_dir
from tenantml.local.workers import LocalWorkers
from tenantml.settings import Settings

__all__ = ["CLIENT_VARIABLES", "WorkerHost", "host_env"]

log = logging.getLogger(__name__)

CLIENT_VARIABLES = ("PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
REAP_INTERVAL_S = 1.0


def host_env(settings: Settings, home: Path, project: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The workers' environment, as ``tenantml up`` gives its own, with the servers and credentials given here."""
    addresses = {"TENANTML_PREFECT__API_URL": settings.prefect.api_url,
                 "TENANTML_MLFLOW__TRACKING_URI": settings.mlflow.tracking_uri,
                 "TENANTML_DATABASE__URL": settings.database.url}
    missing = [name for name, value in addresses.items() if not value]
    if missing:
        raise InvalidSetting(f"a worker host needs the servers' addresses: set {', '.join(missing)} (the server "
                             "host's `tenantml status` shows the Prefect and MLflow URLs)")
    absent = [name for name in CLIENT_VARIABLES if not environ.get(name)]
    if absent:
        raise InvalidSetting(f"a worker host needs the platform's client credentials: set {', '.join(absent)} to "
                             "the values of the same names in the server host's $TENANTML_HOME/credentials.env")
    env = platform_env(settings, home, str(settings.prefect.api_url), str(settings.mlflow.tracking_uri), project)
    env.update({name: environ[name] for name in CLIENT_VARIABLES})
    return env


def _check_prefect(api_url: str) -> None:
    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=10).raise_for_status()
    except httpx.HTTPError as err:
        raise ServiceUnavailable(
            f"the Prefect API at {api_url} does not answer ({err}): is `tenantml up` running on the server host "
            "with TENANTML_BIND_HOST set to an address this host reaches?"
        ) from err


@dataclass
class WorkerHost:
    """``count`` workers of ``worker_class``, named ``<name>-<class>-<n>`` in the pool, and the fork server."""

    settings: Settings
    worker_class: str
    count: int
    name: str
    workers: LocalWorkers | None = None
    _fork_server: Service | None = None

    def start(self) -> None:
        home, project = check_home(self.settings.home), project_dir()
        env = host_env(self.settings, home, project)
        _check_prefect(env["PREFECT_API_URL"])
        logs = home / "logs"
        try:
            if self.settings.prefect.fork_server:
                self._fork_server = fork_server.start(env, home, logs, project)
            self.workers = LocalWorkers(self.settings.prefect, env, logs, project, name_prefix=f"{self.name}-")
            self.workers.start(self.worker_class, self.count)
        except BaseException:
            self.stop()
            raise

    @property
    def services(self) -> list[Service]:
        return [*([self._fork_server] if self._fork_server else []), *(self.workers.services if self.workers else [])]

    def run_until(self, stop: threading.Event) -> None:
        """Replace workers that exit by themselves, until ``stop`` is set."""
        assert self.workers is not None
        while not stop.wait(REAP_INTERVAL_S):
            try:
                self.workers.reap()
            except Exception:  # the Prefect API away for a while: the next round tries again
                log.warning("checking the workers failed; retrying in %s s", REAP_INTERVAL_S, exc_info=True)

    def stop(self) -> None:
        """The workers first (no new run starts), then the fork server; by pid."""
        if self.workers is not None:
            self.workers.stop_all()
        if self._fork_server is not None:
            stop_services([self._fork_server])
            self._fork_server = None
