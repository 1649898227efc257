"""The local platform's servers: the Prefect, MLflow and BentoML command lines, and each one's environment.

This is the one place they are written: ``tenantml up`` and the tests start the same servers. All
listen on 127.0.0.1 only. MLflow runs lean (one worker, no job execution); ``bentoml serve`` runs
the inference service from the project folder, with ``BENTOML_HOME`` under ``TENANTML_HOME`` and
usage tracking off. A starter returns at once, so that servers start side by side; wait for one
with :meth:`Server.wait_ready`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from pydantic import SecretStr

from tenantml.errors import PlatformError
from tenantml.local.processes import Service, start_service, stop_services, wait_healthy
from tenantml.settings import MlflowSettings

__all__ = [
    "ENTRY_POINT_GROUP",
    "HOST",
    "MlflowAuth",
    "READY_TIMEOUT_S",
    "Server",
    "inference_command",
    "inference_env",
    "inference_server",
    "mlflow_server",
    "prefect_server",
    "service_import",
    "tenant_api_command",
    "tenant_api_server",
]

HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
ENTRY_POINT_GROUP = "tenantml.local"


@dataclass(frozen=True)
class Server:
    """A started server: its process, the URL clients use, and the URL that answers 200 when ready."""

    service: Service
    url: str
    health_url: str

    @property
    def pid(self) -> int:
        return self.service.pid

    def wait_ready(self, deadline_s: float = READY_TIMEOUT_S) -> Server:
        """Poll the health URL; a server that never gets there is stopped before the error rises."""
        try:
            wait_healthy(self.service, self.health_url, deadline_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_services([self.service])


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def prefect_server(
    port: int, env: Mapping[str, str], home: Path, log_dir: Path, cwd: Path, database_url: str | None = None,
    auth_string: str | None = None, host: str = HOST,
) -> Server:
    """``prefect server start`` on ``host`` with ``PREFECT_HOME`` at ``home``; SQLite there unless ``database_url``.

    Cross-origin requests are allowed from the server's own origin only (Prefect's default is ``*``,
    so any web page the operator opens could drive the API), and CSRF protection is on (Prefect's
    clients and UI fetch a token first). With ``auth_string`` every API call but the health check
    needs it as HTTP basic auth; the UI asks for it once.
    """
    origin = f"http://{host}:{port}"
    server_env = {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                  "PREFECT_SERVER_CORS_ALLOWED_ORIGINS": origin, "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": "true"}
    if database_url is not None:
        server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    if auth_string is not None:
        server_env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
    command = [_bin("prefect"), "server", "start", "--host", host, "--port", str(port)]
    api = f"http://{host}:{port}/api"
    return Server(start_service("prefect-server", command, server_env, log_dir, cwd), api, f"{api}/health")


@dataclass(frozen=True)
class MlflowAuth:
    """MLflow's basic-auth app: its admin (created on the first start), and its credential cache."""

    admin_username: str
    admin_password: str
    secret_key: str
    cache_ttl_s: int = 60


def _auth_config(store: Path, auth: MlflowAuth, database_uri: str) -> Path:
    """The auth app's config (MLFLOW_AUTH_CONFIG_PATH), beside the store, 0600: no secret in it but a password
    ``database_uri`` may hold (MLflow reads that URI from this file only).

    ``NO_PERMISSIONS``: a user sees only what it is granted (MLflow's default, READ, lets every user
    read every tenant). Without a cache every request pays a PBKDF2 check of the password (about a
    second on a busy 2-core machine); with one it is paid once per user and TTL. The admin password
    comes from the environment (``MLFLOW_AUTH_ADMIN_PASSWORD``) and only matters on the first start.
    """
    path = store / "auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = {database_uri.replace('%', '%%')}\n"  # configparser interpolates %
        f"admin_username = {auth.admin_username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {auth.cache_ttl_s}\n"
    )
    path.chmod(0o600)
    return path


def mlflow_server(port: int, env: Mapping[str, str], store: Path, log_dir: Path, cwd: Path,
                  auth: MlflowAuth | None = None, artifacts: tuple[str, Mapping[str, str]] | None = None,
                  databases: MlflowSettings | None = None, host: str = HOST) -> Server:
    """``mlflow server`` on ``store``: runs and models in ``store/mlflow.db``, artifacts in ``store/artifacts``.

    With ``auth`` it runs MLflow's basic-auth app (users in ``store/auth.db``): every call but the
    health check needs a user, and GraphQL is checked too (MLflow's default, kept on).
    ``artifacts`` is another destination (``s3://...``) and the variables the server needs to reach it
    (tenantml.adapters.s3_setup.mlflow_artifacts); clients upload through the server either way.
    ``databases`` may move both databases elsewhere (``backend_store_uri``, ``auth_database_uri``; the auth app's tables go
    to the backend store's database unless it has its own). The backend store's URI goes in the
    environment (``MLFLOW_BACKEND_STORE_URI``), not on the command line, where ``ps`` shows it.
    """
    destination, artifacts_env = artifacts or (str(store / "artifacts"), {})
    backend = _secret(databases.backend_store_uri if databases else None) or f"sqlite:///{store / 'mlflow.db'}"
    command = [
        _bin("mlflow"), "server", "--artifacts-destination", destination, "--serve-artifacts",
        "--host", host, "--port", str(port), "--workers", "1",
    ]
    server_env = {**env, **artifacts_env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                  "MLFLOW_BACKEND_STORE_URI": backend}
    if auth is not None:
        store.mkdir(parents=True, exist_ok=True)
        auth_database = (_secret(databases.auth_database_uri if databases else None)
                         or (backend if databases and databases.backend_store_uri else f"sqlite:///{store / 'auth.db'}"))
        command[2:2] = ["--app-name", "basic-auth"]
        server_env.update({
            "MLFLOW_AUTH_CONFIG_PATH": str(_auth_config(store, auth, auth_database)),
            "MLFLOW_AUTH_ADMIN_USERNAME": auth.admin_username,
            "MLFLOW_AUTH_ADMIN_PASSWORD": auth.admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": auth.secret_key,
            "MLFLOW_SERVER_ENABLE_GRAPHQL_AUTH": "true",
        })
    uri = f"http://{host}:{port}"
    return Server(start_service("mlflow-server", command, server_env, log_dir, cwd), uri, f"{uri}/health")


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def service_import() -> str:
    """The inference service as ``bentoml serve`` names it, from the ``inference`` entry point.

    Declared in pyproject.toml and read from the installed metadata, not imported: importing the
    service would import BentoML into ``tenantml up`` for a string that ``bentoml serve`` resolves
    itself, in the project folder.
    """
    found = entry_points(group=ENTRY_POINT_GROUP, name="inference")
    if not found:
        raise PlatformError(
            f"no 'inference' entry point in group {ENTRY_POINT_GROUP!r}: tenantml's installed metadata is "
            "older than its pyproject.toml; reinstall it (`make install`, or `pip install -e .`)"
        )
    return next(iter(found)).value


def inference_command(project: Path, port: int, extra_args: Sequence[str] = ()) -> list[str]:
    """``bentoml serve`` of the service; ``extra_args`` e.g. ``["--arg", "gc_freeze=false"]``."""
    return [_bin("bentoml"), "serve", service_import(), "--working-dir", str(project), "--host", HOST,
            "--port", str(port), *extra_args]


def inference_env(env: Mapping[str, str], home: Path) -> dict[str, str]:
    """``env`` plus BentoML's: its home under TENANTML_HOME, no tracking."""
    return {
        **env,
        "BENTOML_HOME": str(home.resolve() / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "TENANTML_HOME": str(home.resolve()),
    }


def inference_server(
    port: int,
    env: Mapping[str, str],
    home: Path,
    project: Path,
    log_dir: Path,
    name: str = "inference",
    extra_args: Sequence[str] = (),
) -> Server:
    """``bentoml serve`` of the inference service, run from ``project``; ready when ``/readyz`` answers."""
    log_dir.mkdir(parents=True, exist_ok=True)
    command = inference_command(project, port, extra_args)
    url = f"http://{HOST}:{port}"
    return Server(start_service(name, command, inference_env(env, home), log_dir, project), url, f"{url}/readyz")


def tenant_api_command(port: int) -> list[str]:
    """The tenant API (tenantml.tenant_api.serve) under this interpreter, on 127.0.0.1."""
    from tenantml.tenant_api import serve  # the entrypoint module imports nothing heavy until it runs

    return [sys.executable, "-m", serve.__name__, "--host", HOST, "--port", str(port)]


def tenant_api_server(port: int, env: Mapping[str, str], log_dir: Path, cwd: Path, name: str = "tenant-api") -> Server:
    """The tenant API, its own process; ready when ``/readyz`` answers (the training metadata does)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://{HOST}:{port}"
    return Server(start_service(name, tenant_api_command(port), dict(env), log_dir, cwd), url, f"{url}/readyz")
