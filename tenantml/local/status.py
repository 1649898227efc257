"""`tenantml status`: is the platform up, and where."""

from __future__ import annotations

import urllib.request
from typing import Any

import psutil

from tenantml.bootstrap import read_platform_state
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
    state = read_platform_state(settings.home) or {}
    prefect_api = settings.prefect.api_url or state.get("prefect_api_url")
    mlflow_uri = settings.mlflow.tracking_uri or state.get("mlflow_tracking_uri")
    inference = state.get("inference_url")
    components = {
        "prefect": _healthy(f"{prefect_api}/health" if prefect_api else None),
        "mlflow": _healthy(f"{mlflow_uri}/health" if mlflow_uri else None),
    }
    if inference:
        components["inference"] = _healthy(f"{inference}/readyz")
    pids = state.get("pids", {})
    workers = {name: psutil.pid_exists(pid) for name, pid in pids.items() if name.startswith("worker-")}
    return {
        "healthy": bool(state) and all(components.values()) and all(workers.values()),
        "home": str(settings.home.resolve()),
        "prefect_api_url": prefect_api,
        "prefect_ui_url": state.get("prefect_ui_url"),
        "mlflow_tracking_uri": mlflow_uri,
        "inference_url": inference,
        "components": components,
        "workers": workers,
    }
