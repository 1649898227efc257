"""The composition root: build the adapters a process needs from its settings, once, at its entrypoint.

Flows, the inference service and the CLI all start here. Addresses come from settings only
(``TENANTML_MLFLOW__TRACKING_URI``, ``TENANTML_PREFECT__API_URL``, ...): the local platform hands
them to its children through :meth:`Settings.to_env`, and the CLI fills them in from the running
local platform before it builds a ``Connection`` (see ``tenantml.local.state``). MLflow is imported
only when a tracking or registry adapter is first used: a training master must start fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from tenantml.adapters.database import create_database
from tenantml.adapters.storage import TenantStorage
from tenantml.adapters.store import Store
from tenantml.errors import PlatformError
from tenantml.settings import Settings

if TYPE_CHECKING:
    from tenantml.adapters.object_storage import S3Objects
    from tenantml.adapters.orchestration import PrefectDispatcher
    from tenantml.adapters.registry import Registry
    from tenantml.adapters.tracking import Tracking
    from tenantml.domain.request import TrainingRequest
    from tenantml.inference.mlflow_source import MlflowModels
    from tenantml.ports import Capacity, MemoryKills
    from tenantml.services.supervisor import TrainingSupervisor

__all__ = ["Connection", "FixedCapacity", "fixed_capacity"]


@dataclass(frozen=True)
class FixedCapacity:
    """Slots per worker class that do not change (a fleet the provisioner does not size)."""

    by_class: Mapping[str, int]

    def slots(self) -> Mapping[str, int]:
        return self.by_class


def fixed_capacity(settings: Settings) -> FixedCapacity:
    """The fixed fleet of the settings: ``TENANTML_PREFECT__SMALL_WORKERS`` and ``..._LARGE_WORKERS``."""
    prefect = settings.prefect
    return FixedCapacity({"small": prefect.small_workers * prefect.runs_per_worker,
                          "large": prefect.large_workers * prefect.runs_per_worker})


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
        if self.settings.storage.backend == "s3":
            from tenantml.adapters.s3_datasets import ObjectTenantStorage

            return ObjectTenantStorage(self.settings.datasets_root, lambda: self.objects)  # loaded when used
        return TenantStorage(self.settings.datasets_root)

    @cached_property
    def objects(self) -> S3Objects:
        """The S3 bucket of ``TENANTML_STORAGE__BUCKET_BLOCK`` (backend s3): datasets and checkpoints."""
        from tenantml.adapters.s3_setup import load_objects

        return load_objects(self.settings)

    @property
    def tracking_uri(self) -> str:
        return _required(self.settings.mlflow.tracking_uri, "MLflow", "TENANTML_MLFLOW__TRACKING_URI", self.settings)

    @property
    def prefect_api_url(self) -> str:
        return _required(self.settings.prefect.api_url, "Prefect", "TENANTML_PREFECT__API_URL", self.settings)

    @cached_property
    def tracking(self) -> Tracking:
        from tenantml.adapters.tracking import Tracking

        if self.settings.storage.backend == "s3":
            from tenantml.adapters.object_storage import ObjectCheckpoints

            return Tracking(self.tracking_uri, ObjectCheckpoints(self.objects))
        return Tracking(self.tracking_uri)

    @cached_property
    def registry(self) -> Registry:
        from tenantml.adapters.registry import Registry

        return Registry(self.tracking_uri)

    def require_current_schema(self) -> None:
        """Refuse to work on a metadata database at another schema revision than this code's.

        Flow runs call this instead of upgrading: a worker of a newer release must not migrate the
        live database under a supervisor of the older one (schema changes are `tenantml up`'s and
        `tenantml db upgrade`'s), and a worker of an older release must not write a newer schema.
        """
        current, head = self.schema_revisions()
        if current != head:
            raise PlatformError(
                f"the training metadata is at schema revision {current or '(none)'} and this code needs {head}: "
                "run `tenantml db upgrade` (or `tenantml up`) with this release first"
            )

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

    @cached_property
    def inference_models(self) -> MlflowModels:
        """Champions and model versions as the inference service loads them."""
        from tenantml.inference.mlflow_source import MlflowModels

        return MlflowModels(self.tracking_uri)

    @cached_property
    def dispatcher(self) -> PrefectDispatcher:
        from tenantml.adapters.orchestration import PrefectDispatcher

        return PrefectDispatcher(self.settings.prefect.api_url)  # None: the environment's PREFECT_API_URL


    def supervisor(self, capacity: Capacity, finalizing: Executor | None = None,
                   memory_kills: MemoryKills | None = None) -> TrainingSupervisor:
        """The training supervisor over this connection: finalization through MLflow (imported when a
        request first ends), the attempts tables published to Prefect off the loop's thread;
        ``memory_kills`` tells it the crashes that were memory kills (the local platform's cgroups)."""
        from tenantml.adapters.orchestration import AttemptsPublisher, PrefectRunLogs
        from tenantml.services.background import BackgroundSender
        from tenantml.services.supervisor import TrainingSupervisor

        settings = self.settings
        sender = BackgroundSender("tenantml-prefect-display")
        return TrainingSupervisor(
            self.store, self.dispatcher, _LazyCompletion(self, settings.training.checkpoint_retention), capacity,
            settings.training, settings.scheduler, on_change=AttemptsPublisher(
                sender, settings.prefect.api_url, settings.mlflow.tracking_uri).publish,
            finalizing=finalizing, default_max_running=settings.quotas.max_running,
            run_log=PrefectRunLogs(sender, settings.prefect.api_url), memory_kills=memory_kills,
        )


class _LazyCompletion:
    """Imports MLflow only when a request first ends."""

    def __init__(self, connection: Connection, retention: int) -> None:
        self.connection, self.retention = connection, retention

    def finalize(self, request: TrainingRequest) -> None:
        from tenantml.services.finalize import Completion

        Completion(self.connection.tracking, self.connection.registry, self.retention).finalize(request)


def _required(configured: str | None, what: str, variable: str, settings: Settings) -> str:
    if configured:
        return configured
    raise PlatformError(
        f"no {what} server: start the platform with `tenantml up` (home {settings.home}) or set {variable}"
    )
