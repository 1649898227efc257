"""Start the real Prefect and MLflow servers for tests, the same way `tenantml up` does."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tenantml.local.processes import Service, claim_port, start_service, stop_services, wait_healthy

__all__ = ["RunningServer", "start_mlflow", "start_prefect"]


@dataclass
class RunningServer:
    url: str
    service: Service
    folder: Path

    def stop(self) -> None:
        stop_services([self.service])


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def start_mlflow(folder: Path) -> RunningServer:
    port = claim_port("MLflow server", 0)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    service = start_service(
        "mlflow-server",
        [_bin("mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env, folder, folder,
    )
    return _healthy_or_stopped(service, f"http://127.0.0.1:{port}", folder)


def start_prefect(folder: Path) -> RunningServer:
    port = claim_port("Prefect server", 0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(folder), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    service = start_service(
        "prefect-server", [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env, folder, folder,
    )
    return _healthy_or_stopped(service, f"http://127.0.0.1:{port}/api", folder)


def _healthy_or_stopped(service: Service, url: str, folder: Path) -> RunningServer:
    """Wait for ``url``/health; a server that never gets there is stopped before the error rises."""
    try:
        wait_healthy(service, f"{url}/health", 120)
    except BaseException:
        stop_services([service])
        raise
    return RunningServer(url, service, folder)
