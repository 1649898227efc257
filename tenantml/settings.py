"""Settings: one root class, nested sections, environment prefix ``TENANTML_``.

Nested fields use a double underscore: ``TENANTML_TRAINING__HEARTBEAT_TIMEOUT_S=10``.
Build them at an entrypoint with :func:`load_settings` and pass them down; never read them at
import time.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from tenantml.errors import InvalidSetting
from tenantml.setting_variables import ENV_PREFIX, NESTED_DELIMITER, NOT_SETTINGS, as_variables, variable_name

__all__ = [
    "ENV_PREFIX",
    "NESTED_DELIMITER",
    "DatabaseSettings",
    "FleetSettings",
    "LimitSettings",
    "MlflowSettings",
    "PrefectSettings",
    "QuotaSettings",
    "ServingSettings",
    "Settings",
    "StorageSettings",
    "TenantApiSettings",
    "TrainingSettings",
    "load_settings",
]

class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class DatabaseSettings(_Section):
    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL of the training metadata database; "
        "default: SQLite at $TENANTML_HOME/tenantml.db. PostgreSQL: postgresql+psycopg://...",
    )


class PrefectSettings(_Section):
    api_url: str | None = Field(
        default=None, description="Prefect API of an existing server; default: the embedded server's"
    )
    port: int = Field(default=0, ge=0, le=65535, description="Port of the embedded Prefect server (0: a free one)")
    database_url: SecretStr | None = Field(
        default=None,
        description="Database of the embedded Prefect server; default SQLite under $TENANTML_HOME/prefect. "
        "PostgreSQL: postgresql+asyncpg://...",
    )
    worker_query_seconds: float = Field(
        default=1.0, gt=0, description="How often process workers poll for runs (Prefect's default is 10 s)"
    )
    master_pool: str = Field(default="tenantml-master", description="Work pool of training masters")
    training_pool: str = Field(default="tenantml-training", description="Work pool of training workers")
    small_workers: int = Field(default=2, ge=0, description="Process workers started for the small class")
    large_workers: int = Field(default=1, ge=0, description="Process workers started for the large class")
    runs_per_worker: int = Field(default=1, ge=1, description="Trainings one worker runs at once")
    small_memory_mb: int | None = Field(
        default=None, gt=0, description="Memory of each small-class flow run, in a cgroup of its own: a kernel OOM "
        "kill there escalates the training to the large class (root and a memory cgroup controller needed); none if unset",
    )
    large_memory_mb: int | None = Field(
        default=None, gt=0, description="Memory of each large-class flow run, in a cgroup of its own; none if unset"
    )
    remote_small_workers: int = Field(
        default=0, ge=0, description="Small-class workers on worker hosts (`tenantml worker start`): the scheduler "
        "counts their slots beside the local workers'",
    )
    remote_large_workers: int = Field(
        default=0, ge=0, description="Large-class workers on worker hosts (`tenantml worker start --class large`)",
    )
    fork_server: bool = Field(
        default=True,
        description="Start flow runs by forking a process that has imported everything once (seconds faster)",
    )


class FleetSettings(_Section):
    """The provisioner's bounds and pace per worker class (see tenantml.domain.provisioning for the rule).

    The defaults keep the fixed fleet's peak (2 small, 1 large) as the maxima, so a demo trains as
    many models at once as before; one small worker stays up so that a first training starts without
    waiting for a worker to start; the large class, used only after a resource failure, costs nothing
    until one happens.
    """

    provisioner: bool = Field(
        default=True,
        description="Size the training workers by their workload; off: TENANTML_PREFECT__SMALL_WORKERS and "
        "TENANTML_PREFECT__LARGE_WORKERS workers, fixed",
    )
    small_min: int = Field(default=1, ge=0, description="Fewest small workers the provisioner keeps (0: none while idle)")
    small_max: int = Field(default=2, ge=0, description="Most small workers the provisioner starts")
    large_min: int = Field(default=0, ge=0, description="Fewest large workers the provisioner keeps (0: none while idle)")
    large_max: int = Field(default=1, ge=0, description="Most large workers the provisioner starts")
    cooldown_s: float = Field(
        default=30.0, ge=0,
        description="How long fewer workers must suffice, and the last change be past, before a scale-down",
    )
    interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often the provisioner reads the workload and sizes the fleet"
    )
    drain_horizon_s: float = Field(
        default=5.0, ge=0,
        description="About a new worker's start-up: queued work the current workers start sooner asks for none",
    )
    rate_window_s: float = Field(
        default=300.0, gt=0, description="Completions counted for the rate at which the current workers drain the queue"
    )

    @model_validator(mode="after")
    def _bounds(self) -> FleetSettings:
        for worker_class in ("small", "large"):
            low, high = getattr(self, f"{worker_class}_min"), getattr(self, f"{worker_class}_max")
            if low > high:
                name = f"{ENV_PREFIX}FLEET{NESTED_DELIMITER}{worker_class.upper()}"
                raise ValueError(
                    f"{name}_MIN {low} is above {name}_MAX {high}: lower the minimum or raise the maximum"
                )
        return self

    def bounds(self, worker_class: str) -> tuple[int, int]:
        """(min, max) workers of ``worker_class``."""
        return getattr(self, f"{worker_class}_min"), getattr(self, f"{worker_class}_max")


class MlflowSettings(_Section):
    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking server; default: the embedded server's"
    )
    port: int = Field(default=0, ge=0, le=65535, description="Port of the embedded MLflow server (0: a free one)")
    auth_cache_ttl_s: int = Field(
        default=60, ge=0,
        description="How long the embedded MLflow server trusts a checked password (0: check each request, ~20x slower)",
    )
    backend_store_uri: SecretStr | None = Field(
        default=None,
        description="Database of the embedded MLflow server's runs and models; default: SQLite at "
        "$TENANTML_HOME/mlflow/mlflow.db. PostgreSQL: postgresql+psycopg://... (a database of its own: MLflow keeps "
        "its own alembic_version, as Prefect does)",
    )
    auth_database_uri: SecretStr | None = Field(
        default=None,
        description="Users and grants of the embedded MLflow server's basic-auth app; default: the backend store's "
        "database if TENANTML_MLFLOW__BACKEND_STORE_URI is set (own tables, version table alembic_version_auth), "
        "else SQLite at $TENANTML_HOME/mlflow/auth.db",
    )


class TrainingSettings(_Section):
    heartbeat_interval_s: float = Field(default=1.0, gt=0, description="How often a worker sends a heartbeat")
    heartbeat_timeout_s: float = Field(
        default=3.0, gt=0,
        description="A worker whose heartbeat has not changed for this long is presumed lost and fenced off",
    )
    start_timeout_s: float = Field(
        default=120.0, gt=0, description="How long a started attempt may take to send its first heartbeat"
    )
    checkpoint_interval_s: float = Field(
        default=5.0, gt=0, description="Longest time between two committed checkpoints"
    )
    attempt_budget: int = Field(
        default=3, ge=0, description="Failures in a row without a new checkpoint before a request fails (user errors fail at once)"
    )
    supervisor_timeout_s: float = Field(
        default=15.0, gt=0,
        description="A training supervisor silent this long is presumed dead; a standby takes its lease over",
    )
    watch_interval_s: float = Field(
        default=0.5, gt=0, description="How often the training supervisor ticks: schedules, watches, fails over"
    )
    checkpoint_retention: int = Field(
        default=1, ge=0, description="Checkpoints kept per completed request (newest first)"
    )
    small_memory_limit_mb: int | None = Field(
        default=None, gt=0, description="Address-space limit (RLIMIT_AS) of a small-class attempt; none if unset"
    )


class SchedulerSettings(_Section):
    """Who gets the next worker slot: weighted fair share across waiting tenants (tenantml.domain.scheduling)."""

    preemption: bool = Field(
        default=True,
        description="Take a slot from a tenant over its fair share for one that waited too long (checkpointed: "
        "nothing is lost)",
    )
    preempt_after_s: float = Field(
        default=30.0, ge=0, description="How long a request waits behind a tenant over its share before preemption"
    )
    usage_window_s: float = Field(
        default=600.0, gt=0,
        description="Recent worker time per tenant that breaks ties between tenants running equally many",
    )


class LimitSettings(_Section):
    max_dataset_bytes: int = Field(
        default=2 * 1024**3, ge=1, description="Largest dataset file a training may read; larger ones are refused at submission"
    )
    max_header_bytes: int = Field(
        default=1024**2, ge=1, description="Longest CSV header line; read with a bounded reader at submission"
    )
    max_columns: int = Field(
        default=1_000, ge=2, description="Most columns a dataset may have (the feature schema is stored with each version)"
    )
    max_rows: int = Field(
        default=10_000_000, ge=1,
        description="Most rows a dataset may have (at submission: the lines after a CSV header, a Parquet file's count)",
    )
    max_total_steps: int = Field(
        default=10_000_000, ge=1,
        description="Most steps one training may take (epochs times batches, or trees over trees per step)",
    )
    max_model_parameters: int = Field(
        default=20_000_000, ge=1,
        description="Most weights a linear or neural model may have (features, hidden layers and classes)",
    )
    max_checkpoint_bytes: int = Field(
        default=1024**3, ge=1, description="Largest checkpoint a worker uploads; a larger one fails the training"
    )


class QuotaSettings(_Section):
    max_queued: int | None = Field(
        default=None, ge=0,
        description="Requests a tenant may have waiting for a worker, unless its own quota says otherwise; none: no limit",
    )
    max_running: int | None = Field(
        default=None, ge=0,
        description="Trainings a tenant may run at once on all classes, unless its own quota says otherwise; "
                    "none: no limit",
    )


class ServingSettings(_Section):
    url: str | None = Field(
        default=None, description="Inference service for clients (`tenantml predict`); default: the local platform's"
    )
    port: int = Field(default=0, ge=0, le=65535, description="Port of the inference service (0: a free one)")
    model_cache_size: int = Field(default=16, ge=1, description="Tenant models held in memory at once")
    max_body_bytes: int = Field(default=1_048_576, ge=1, description="Largest inference request body")
    champion_refresh_s: float = Field(
        default=2.0, gt=0, description="How often the service checks whether a champion alias moved"
    )


class TenantApiSettings(_Section):
    """The tenant API (tenantml.tenant_api): its own process, beside the inference service."""

    port: int = Field(default=0, ge=0, le=65535, description="Port of the tenant API (0: a free one)")
    follow_interval_s: float = Field(
        default=0.5, gt=0, le=10, description="How often a followed training's progress is read and sent"
    )


class StorageSettings(_Section):
    """Where datasets, checkpoints and MLflow artifacts live: under ``TENANTML_HOME``, or in an S3 bucket.

    With ``backend=s3``, ``tenantml up`` registers the ``credentials_block`` (AWS Credentials) and
    ``bucket_block`` (S3 Bucket) Prefect blocks from these values, and processes load the bucket block
    by name: an operator may repoint it in the Prefect UI. Keys are ``<prefix>/<tenant>/...``.
    """

    backend: Literal["local", "s3"] = Field(
        default="local", description="local: files under TENANTML_HOME; s3: an S3 (or S3-compatible) bucket"
    )
    bucket: str | None = Field(default=None, description="The S3 bucket (backend=s3); it must exist")
    prefix: str = Field(
        default="tenantml", pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$",
        description="Key prefix in the bucket: each tenant's objects are under <prefix>/<tenant>/",
    )
    endpoint_url: str | None = Field(
        default=None, description="S3 API endpoint for S3-compatible stores (MinIO, Ceph, moto); default: AWS"
    )
    region: str = Field(default="us-east-1", description="AWS region of the bucket")
    access_key_id: str | None = Field(
        default=None, description="AWS access key id; default: boto3's own chain (environment, profile, role)"
    )
    secret_access_key: SecretStr | None = Field(default=None, description="AWS secret access key")
    credentials_block: str = Field(
        default="tenantml-aws", description="Name of the AWS Credentials block `tenantml up` registers"
    )
    bucket_block: str = Field(
        default="tenantml-storage", description="Name of the S3 Bucket block `tenantml up` registers and processes load"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED_DELIMITER, extra="forbid"
    )

    home: Path = Field(
        default=Path(".tenantml"),
        description="Databases, artifacts, datasets and logs of the embedded platform",
    )
    api_key: SecretStr | None = Field(
        default=None, description="A tenant's API key: the CLI then acts as that tenant only"
    )
    bind_host: str = Field(
        default="127.0.0.1",
        description="Address the embedded Prefect and MLflow servers listen on and give clients: one that worker "
        "hosts reach (a specific address, not 0.0.0.0)",
    )
    api_url: str | None = Field(
        default=None,
        description="The tenant API; with TENANTML_API_KEY the CLI then talks to it only (tenant mode: no database, "
        "Prefect or MLflow address)",
    )
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    tenant_api: TenantApiSettings = Field(default_factory=TenantApiSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)

    def to_env(self, *, exclude_unset: bool = False) -> dict[str, str]:
        """These settings as ``TENANTML_*`` variables: a child process loads equal settings from them.

        Secrets come out as their values (the children need them); unset optional values are left
        out. ``exclude_unset`` keeps only the fields given explicitly, as ``model_dump`` does.
        """
        return as_variables(self.model_dump(exclude_unset=exclude_unset, exclude_none=True))

    @property
    def datasets_root(self) -> Path:
        return self.home.resolve() / "datasets"

    @field_validator("bind_host")
    @classmethod
    def _bind_host(cls, host: str) -> str:
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - refused, not bound
            raise ValueError("not an address clients can call: give this host's address that the worker hosts "
                             "reach, e.g. 10.0.0.5")
        return host

    @property
    def database_url(self) -> str:
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite:///{self.home.resolve() / 'tenantml.db'}"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; a bad value raises :class:`InvalidSetting` naming it."""
    # pydantic-settings ignores unknown top-level variables (extra="forbid" only reaches nested ones).
    unknown = sorted(
        name for name in os.environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in NOT_SETTINGS
        and name[len(ENV_PREFIX):].partition(NESTED_DELIMITER)[0].lower() not in Settings.model_fields
    )
    if unknown:
        known = ", ".join(ENV_PREFIX + field.upper() for field in Settings.model_fields)
        raise InvalidSetting(f"unknown settings {', '.join(unknown)}: remove them; known: {known}")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # sections may be given as dicts
    except SettingsError as err:  # a section given as malformed JSON, e.g. TENANTML_TRAINING='{...'
        field = re.search(r'field "([^"]+)"', str(err))
        variable = ENV_PREFIX + (field.group(1).upper() if field else "*")
        raise InvalidSetting(f"invalid settings: {variable}: {err}: give each value as {variable}__<NAME>") from err
    except ValidationError as err:
        problems = []
        for error in err.errors():
            variable = variable_name(str(part) for part in error["loc"])
            problems.append(f"{variable}: {error['msg']} (got {error.get('input')!r})")
        raise InvalidSetting("invalid settings: " + "; ".join(problems)) from err
