"""`tenantml status`: is the platform up, and where; each supervised service's pid, restarts and last exit."""

from __future__ import annotations

import urllib.request
from typing import Any

import psutil

from tenantml.local.credentials import credentials_file
from tenantml.local.state import read_state
from tenantml.settings import Settings

__all__ = ["platform_status"]


def _healthy(url: str | None) -> bool:
    if not url:
        return False
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def platform_status(settings: Settings) -> dict[str, Any]:
    state = read_state(settings.home)
    prefect_api = settings.prefect.api_url or (state.prefect_api_url if state else None)
    mlflow_uri = settings.mlflow.tracking_uri or (state.mlflow_tracking_uri if state else None)
    inference = settings.serving.url or (state.inference_url if state else None)
    components = {
        "prefect": _healthy(f"{prefect_api}/health" if prefect_api else None),
        "mlflow": _healthy(f"{mlflow_uri}/health" if mlflow_uri else None),
    }
    if inference:
        components["inference"] = _healthy(f"{inference}/readyz")
    tenant_api = state.tenant_api_url if state else None
    if tenant_api:
        components["tenant_api"] = _healthy(f"{tenant_api}/readyz")
    pids = state.pids if state else {}
    workers = {name: psutil.pid_exists(pid) for name, pid in pids.items() if name.startswith("worker-")}
    services = {name: {**record, "alive": psutil.pid_exists(int(record["pid"]))}
                for name, record in (state.services if state else {}).items()}
    return {
        "healthy": bool(state) and all(components.values()) and all(workers.values()),
        "home": str(settings.home.resolve()),
        "prefect_api_url": prefect_api,
        "prefect_ui_url": state.prefect_ui_url if state else None,
        "mlflow_tracking_uri": mlflow_uri,
        "inference_url": inference,
        "tenant_api_url": tenant_api,
        "credentials_file": str(credentials_file(settings.home)) if credentials_file(settings.home).is_file() else None,
        "components": components,
        "workers": workers,
        "services": services,  # pid, alive, restarts, up_since, restarting, last_exit {code, signal, at}
        "worker_restarts": dict(state.worker_restarts) if state else {},  # per class: replaced after exiting
    }
