"""A real tenant API (uvicorn, `python -m tenantml.tenant_api.serve`) on a free port, for tests and benchmarks.

It is started with the command line `tenantml up` uses (tenantml.local.servers.tenant_api_server),
in a temporary home, and stopped by its pid. The registry may be a SQLite file (MLflow's own store,
no server) where a test needs no trainings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import httpx

from tenantml.local.processes import claim_port
from tenantml.local.project import project_dir
from tenantml.local.servers import Server, tenant_api_server

__all__ = ["client_for", "start_tenant_api"]


def start_tenant_api(home: Path, database_url: str, tracking_uri: str,
                     settings: Mapping[str, str] | None = None) -> Server:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTML_", "MLFLOW_"))}
    env.update(TENANTML_HOME=str(home), TENANTML_DATABASE__URL=database_url,
               TENANTML_MLFLOW__TRACKING_URI=tracking_uri, MLFLOW_TRACKING_URI=tracking_uri, **(settings or {}))
    port = claim_port("tenant API", 0)
    return tenant_api_server(port, env, home / "logs", project_dir()).wait_ready()


def client_for(url: str, api_key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key is not None else {}
    return httpx.Client(base_url=url, headers=headers, timeout=60)


# -- a tenant API over its own SQLite metadata and a SQLite registry, with tenants made on demand ------
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from tenantml.adapters.database import create_database  # noqa: E402
from tenantml.adapters.registry import Registry  # noqa: E402
from tenantml.adapters.storage import TenantStorage  # noqa: E402
from tenantml.adapters.store import Store  # noqa: E402
from tenantml.domain.tenant import hash_api_key, new_api_key  # noqa: E402


@dataclass
class LiveTenantApi:
    """A running tenant API and the platform side of it, as an operator (or a test) reaches it."""

    server: Server
    store: Store
    storage: TenantStorage
    registry: Registry
    home: Path

    @property
    def url(self) -> str:
        return self.server.url

    def new_tenant(self) -> tuple[str, str]:
        """A new tenant: (its name, its API key)."""
        name, key = "t-" + uuid.uuid4().hex[:10], new_api_key()
        self.store.add_tenant(name, hash_api_key(key), datetime.now(UTC))
        return name, key

    def register(self, tenant: str, model: str, accuracy: float) -> str:
        """A model version as a training registers it (without a run), as tests/unit/test_models.py does."""
        no_run: str = None  # type: ignore[assignment]
        files = self.home / "models" / uuid.uuid4().hex
        files.mkdir(parents=True)
        (files / "MLmodel").write_text(f"not a model: {tenant}/{model}\n")
        return self.registry.register(tenant, model, str(files), no_run, {"metric.accuracy": str(accuracy)})


@contextmanager
def live_tenant_api(home: Path, settings: Mapping[str, str] | None = None) -> Iterator[LiveTenantApi]:
    database_url = f"sqlite:///{home / 'tenantml.db'}"
    tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
    home.mkdir(parents=True, exist_ok=True)
    engine = create_database(database_url)
    registry = Registry(tracking_uri)
    registry.list_models("nobody")  # MLflow creates its tables once, before the server opens the file
    server = start_tenant_api(home, database_url, tracking_uri, settings)
    try:
        yield LiveTenantApi(server, Store(engine), TenantStorage(home / "datasets"), registry, home)
    finally:
        server.stop()
        engine.dispose()
