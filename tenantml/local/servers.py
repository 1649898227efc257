"""Starting the inference service (serving/service.py) as part of the embedded platform.

``bentoml serve`` runs from the project folder on 127.0.0.1, with ``BENTOML_HOME`` under
``TENANTML_HOME`` and usage tracking off; the service reads its ``TENANTML_*`` settings from the
environment the platform passes down.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tenantml.local.processes import Service, start_service, stop_services, wait_healthy

__all__ = ["SERVICE_IMPORT", "inference_command", "inference_env", "start", "start_inference"]

SERVICE_IMPORT = "serving.service:TenantInference"
READY_TIMEOUT_S = 120.0


def inference_command(
    project_dir: Path, port: int, host: str = "127.0.0.1", extra_args: Sequence[str] = ()
) -> list[str]:
    """``bentoml serve`` of the service; ``extra_args`` e.g. ``["--arg", "gc_freeze=false"]``."""
    bentoml = str(Path(sys.executable).parent / "bentoml")
    return [bentoml, "serve", SERVICE_IMPORT, "--working-dir", str(project_dir), "--host", host, "--port", str(port),
            *extra_args]


def inference_env(env: Mapping[str, str], home: Path) -> dict[str, str]:
    """The platform's environment plus BentoML's: its home under TENANTML_HOME, no tracking."""
    return {
        **env,
        "BENTOML_HOME": str(home.resolve() / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "TENANTML_HOME": str(home.resolve()),
    }


def start_inference(
    env: Mapping[str, str],
    port: int,
    home: Path,
    project_dir: Path,
    log_dir: Path,
    name: str = "inference",
    extra_args: Sequence[str] | None = None,
) -> Service:
    """Start ``bentoml serve`` and wait until ``/readyz`` answers; stops it again if it never does."""
    log_dir.mkdir(parents=True, exist_ok=True)
    command = inference_command(project_dir, port, extra_args=extra_args or ())
    service = start_service(name, command, inference_env(env, home), log_dir, project_dir)
    try:
        wait_healthy(service, f"http://127.0.0.1:{port}/readyz", READY_TIMEOUT_S)
    except BaseException:
        stop_services([service])
        raise
    return service


def start(platform: Any, env: dict[str, str], port: int) -> str | None:
    """Called by ``EmbeddedPlatform`` once Prefect and MLflow are up; returns the service's URL."""
    settings = platform.settings
    home = settings.home.resolve()
    service = start_service(
        "inference", inference_command(settings.project_dir, port), inference_env(env, home), home / "logs",
        settings.project_dir,
    )
    platform.services.append(service)  # stopped with the platform, even if it never gets ready
    wait_healthy(service, f"http://127.0.0.1:{port}/readyz", READY_TIMEOUT_S)
    return f"http://127.0.0.1:{port}"
