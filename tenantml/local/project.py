"""What the local platform takes from the project folder: the work pools' template and prefect.yaml."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tenantml.errors import PlatformError

__all__ = ["deploy", "work_pool_template"]


def work_pool_template(project: Path, command: str | None = None) -> dict[str, Any]:
    """The process pools' base job template, with ``command`` as every flow run's default command."""
    template: dict[str, Any] = json.loads((project / "infra" / "work-pools" / "process.json").read_text())
    if command is not None:
        template["variables"]["properties"]["command"]["default"] = command
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
