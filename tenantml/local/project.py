"""The project folder the local platform runs from: prefect.yaml, flows/, serving/, infra/work-pools/.

Only the local platform needs a checkout; the core package does not know where it is installed.
``TENANTML_PROJECT_DIR`` names the folder (prefect.yaml's pull step reads the same variable, so
every flow run starts there); without it, the checkout this package was installed from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tenantml.errors import PlatformError

__all__ = ["PROJECT_DIR_VARIABLE", "deploy", "project_dir", "work_pool_template"]

PROJECT_DIR_VARIABLE = "TENANTML_PROJECT_DIR"
_CHECKOUT = Path(__file__).resolve().parents[2]


def project_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The project folder: ``TENANTML_PROJECT_DIR``, else this checkout; it must hold prefect.yaml."""
    configured = environ.get(PROJECT_DIR_VARIABLE)
    folder = Path(configured).resolve() if configured else _CHECKOUT
    if not (folder / "prefect.yaml").is_file():
        raise PlatformError(
            f"no prefect.yaml in the project folder {folder}: set {PROJECT_DIR_VARIABLE} to the tenantml "
            "checkout (the folder with prefect.yaml, flows/ and serving/)"
        )
    return folder


def work_pool_template(project: Path, command: str | None = None) -> dict[str, Any]:
    """The process pools' base job template, with ``command`` as every flow run's command.

    The template offers a flow run no variable that runs code: ``command``, ``env`` and
    ``working_dir`` are fixed here, not variables, so a run created through the Prefect API cannot
    replace them (Prefect's default process template lets every run set them).
    """
    template: dict[str, Any] = json.loads((project / "infra" / "work-pools" / "process.json").read_text())
    template["job_configuration"]["command"] = command  # None: the worker's own `python -m prefect.engine`
    return template


def deploy(project: Path, env: Mapping[str, str], log_dir: Path) -> None:
    """Apply the project's prefect.yaml (``prefect deploy --all``); its output goes to a log."""
    prefect = str(Path(sys.executable).parent / "prefect")
    result = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all"],
        env=dict(env), cwd=project, capture_output=True, text=True, timeout=300,
    )
    (log_dir / "prefect-deploy.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise PlatformError(
            f"applying prefect.yaml failed (exit {result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
