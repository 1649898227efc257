"""The composition root: build the adapters a process needs from its settings, once, at its entrypoint.

Flows, the inference service and the CLI all start here. Addresses come from settings only
(``TENANTML_MLFLOW__TRACKING_URI``, ``TENANTML_PREFECT__API_URL``, ...): the local platform hands
them to its children through :meth:`Settings.to_env`, and the CLI fills them in from the running
local platform before it builds a ``Connection`` (see ``tenantml.local.state``). MLflow is imported
only when a tracking or registry adapter is first used: a training master must start fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from tenantml.adapters.database import create_database
from tenantml.adapters.storage import TenantStorage
from tenantml.adapters.store import Store
from tenantml.errors import PlatformError
from tenantml.settings import Settings

if TYPE_CHECKING:
    from tenantml.adapters.orchestration import PrefectDispatcher
    from tenantml.adapters.registry import Registry
    from tenantml.adapters.tracking import Tracking
    from tenantml.inference.mlflow_source import MlflowModels

__all__ = ["Connection"]


@dataclass
class Connection:
    """The platform as seen from one process: store, storage, tracking, registry, dispatcher."""

    settings: Settings
    create_schema: bool = True  # the inference service only reads: it never creates tables

    @cached_property
    def store(self) -> Store:
        return Store(create_database(self.settings.database_url, create_schema=self.create_schema))

    @cached_property
    def storage(self) -> TenantStorage:
        return TenantStorage(self.settings.datasets_root)

    @property
    def tracking_uri(self) -> str:
        return _required(self.settings.mlflow.tracking_uri, "MLflow", "TENANTML_MLFLOW__TRACKING_URI", self.settings)

    @property
    def prefect_api_url(self) -> str:
        return _required(self.settings.prefect.api_url, "Prefect", "TENANTML_PREFECT__API_URL", self.settings)

    @cached_property
    def tracking(self) -> Tracking:
        from tenantml.adapters.tracking import Tracking

        return Tracking(self.tracking_uri)

    @cached_property
    def registry(self) -> Registry:
        from tenantml.adapters.registry import Registry

        return Registry(self.tracking_uri)

    def schema_revisions(self) -> tuple[str | None, str]:
        """The metadata database's schema revision and the newest one, without changing anything."""
        from tenantml.adapters.schema import current_revision, head_revision

        engine = create_database(self.settings.database_url, create_schema=False)
        try:
            return current_revision(engine), head_revision()
        finally:
            engine.dispose()

    def upgrade_schema(self) -> tuple[str | None, str]:
        """Create or upgrade the metadata database's schema; returns (revision before, after)."""
        from tenantml.adapters.schema import upgrade

        engine = create_database(self.settings.database_url, create_schema=False)
        try:
            return upgrade(engine)
        finally:
            engine.dispose()

    def start_master(self, request_id: str, key: str) -> str:
        """Start a training master for an admitted request on the Prefect API; returns its flow run id."""
        from tenantml.adapters.orchestration import submit_master

        return submit_master({"request_id": request_id}, key, self.settings.prefect.api_url)

    @cached_property
    def inference_models(self) -> MlflowModels:
        """Champions and model versions as the inference service loads them."""
        from tenantml.inference.mlflow_source import MlflowModels

        return MlflowModels(self.tracking_uri)

    @cached_property
    def dispatcher(self) -> PrefectDispatcher:
        from tenantml.adapters.orchestration import PrefectDispatcher

        return PrefectDispatcher(self.settings.prefect.api_url)  # None: the environment's PREFECT_API_URL


def _required(configured: str | None, what: str, variable: str, settings: Settings) -> str:
    if configured:
        return configured
    raise PlatformError(
        f"no {what} server: start the platform with `tenantml up` (home {settings.home}) or set {variable}"
    )
