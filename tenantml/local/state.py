"""The local platform's state file, ``$TENANTML_HOME/platform.json``: one typed reader and writer.

``tenantml up`` writes it once everything is healthy, keeps its pids and each service's restarts
current (:mod:`tenantml.local.keeper`), and removes it on a clean stop. Other
processes on the same machine read it to find the servers: the CLI through :func:`connected`,
which fills in whatever address the settings leave unset. Nothing outside ``tenantml.local`` (and
the CLI that starts it) reads this file; the platform's own children get their addresses through
the environment.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tenantml.local.credentials import read_credentials
from tenantml.settings import Settings

__all__ = ["PlatformState", "connected", "read_state", "remove_state", "state_file", "update_state", "write_state"]

_writing = threading.Lock()  # the platform's threads update the file one at a time


@dataclass(frozen=True)
class PlatformState:
    home: str
    supervisor_pid: int
    prefect_api_url: str
    prefect_ui_url: str
    mlflow_tracking_uri: str
    inference_url: str | None
    started_at: float
    pids: dict[str, int] = field(default_factory=dict)
    tenant_api_url: str | None = None
    # per kept service: pid, restarts, up_since, restarting, last_exit {code, signal, at} (keeper.ServiceRecord)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    worker_restarts: dict[str, int] = field(default_factory=dict)  # per class: workers replaced after exiting

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def state_file(home: Path) -> Path:
    return home.resolve() / "platform.json"


def read_state(home: Path) -> PlatformState | None:
    """The running (or crashed) platform's state, or None if there is no state file."""
    path = state_file(home)
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    known = set(PlatformState.__dataclass_fields__)
    return PlatformState(**{key: value for key, value in raw.items() if key in known})


def write_state(state: PlatformState) -> None:
    """Replace the file in one step: a reader (`tenantml status`) never sees half of it."""
    path = state_file(Path(state.home))
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    partial.write_text(state.to_json())
    os.replace(partial, path)


def update_state(home: Path, change: Callable[[PlatformState], PlatformState]) -> PlatformState | None:
    """Read, change and write the state file as one step among this process's threads; None without a file."""
    with _writing:
        state = read_state(home)
        if state is None:
            return None
        changed = change(state)
        write_state(changed)
        return changed


def remove_state(home: Path) -> None:
    state_file(home).unlink(missing_ok=True)


def connected(settings: Settings) -> Settings:
    """``settings`` with the running local platform's addresses where the settings name none.

    The home's credentials (tenantml.local.credentials) become this process's Prefect and MLflow
    client credentials, unless its environment has its own already.
    """
    credentials = read_credentials(settings.home)
    if credentials is not None:
        credentials.export(override=False)
    state = read_state(settings.home)
    if state is None:
        return settings
    mlflow, prefect, serving = settings.mlflow, settings.prefect, settings.serving
    return settings.model_copy(update={
        "mlflow": mlflow if mlflow.tracking_uri else mlflow.model_copy(update={"tracking_uri": state.mlflow_tracking_uri}),
        "prefect": prefect if prefect.api_url else prefect.model_copy(update={"api_url": state.prefect_api_url}),
        "serving": serving if serving.url or not state.inference_url
        else serving.model_copy(update={"url": state.inference_url}),
    })
