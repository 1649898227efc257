"""Build the adapters a process needs from settings, once, at its entrypoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tenantml.adapters.database import create_database
from tenantml.adapters.store import Store
from tenantml.errors import PlatformError
from tenantml.settings import Settings
from tenantml.adapters.storage import TenantStorage

__all__ = ["Connection", "read_platform_state", "state_file"]


def state_file(home: Path) -> Path:
    return home.resolve() / "platform.json"


def read_platform_state(home: Path) -> dict[str, object] | None:
    path = state_file(home)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


@dataclass
class Connection:
    """The platform as seen from one process: store, storage, tracking, registry."""

    settings: Settings

    @cached_property
    def store(self) -> Store:
        return Store(create_database(self.settings.database_url))

    @cached_property
    def storage(self) -> TenantStorage:
        return TenantStorage(self.settings.datasets_root)

    @property
    def tracking_uri(self) -> str:
        return self._server(self.settings.mlflow.tracking_uri, "mlflow_tracking_uri", "MLflow", "TENANTML_MLFLOW__TRACKING_URI")

    @property
    def prefect_api_url(self) -> str:
        return self._server(self.settings.prefect.api_url, "prefect_api_url", "Prefect", "TENANTML_PREFECT__API_URL")

    def _server(self, configured: str | None, state_key: str, what: str, variable: str) -> str:
        """A configured address, else the running embedded platform's (from its state file)."""
        if configured:
            return configured
        state = read_platform_state(self.settings.home)
        if state and state.get(state_key):
            return str(state[state_key])
        raise PlatformError(
            f"no {what} server: start the platform with `tenantml up` (home {self.settings.home}) or set {variable}"
        )

    @cached_property
    def tracking(self):  # type: ignore[no-untyped-def]
        from tenantml.adapters.tracking import Tracking

        return Tracking(self.tracking_uri)

    @cached_property
    def registry(self):  # type: ignore[no-untyped-def]
        from tenantml.adapters.registry import Registry

        return Registry(self.tracking_uri)
