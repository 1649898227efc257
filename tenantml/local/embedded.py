"""The embedded platform behind `tenantml up`: Prefect and MLflow servers, work pools, deployments,
process workers (and the inference service), all on 127.0.0.1, all stopped by pid. A server that exits
while the platform runs is started again on its port (tenantml.local.keeper).

Everything persistent lives under ``TENANTML_HOME``; starting again on the same home keeps every
record. A failure at any point stops whatever was already started.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from tenantml.adapters.s3_setup import mlflow_artifacts, register_blocks
from tenantml.errors import HomeNotWritable, PlatformError
from tenantml.local import fork_server, launch, preflight
from tenantml.local.cgroups import KernelMemoryKills
from tenantml.local.credentials import Credentials, ensure_credentials, read_credentials, without_credentials
from tenantml.local.fleet import FleetLoop
from tenantml.local.keeper import Keeper
from tenantml.local.processes import Service, claim_port, stop_leftovers, stop_services, wait_healthy
from tenantml.local.project import PROJECT_DIR_VARIABLE, deploy, project_dir, work_pool_template
from tenantml.local.servers import (
    MlflowAuth,
    Server,
    inference_server,
    mlflow_server,
    prefect_server,
    tenant_api_server,
)
from tenantml.local.state import PlatformState, read_state, remove_state, update_state, write_state
from tenantml.local.workers import LocalWorkers, create_work_pools
from tenantml.settings import Settings

__all__ = ["EmbeddedPlatform", "platform_env"]

log = logging.getLogger(__name__)

SERVER_READY_S = 300.0  # a cold start of MLflow took 119 s on this 2-core machine at a load of 40
# A restarted server that is still starting is waited for, not killed and started again from scratch:
# on a loaded machine MLflow's and Prefect's imports alone can take minutes.
RESTART_READY_S = 600.0
ACCESS_SYNC_S = 30.0  # how often tenants' MLflow grants are made exact again
RIDE_OUT = {
    # A training's MLflow calls (a checkpoint's upload blocks the training) wait out a restarted MLflow
    # server: retries after 0, 2, 4, 8 ... 120 s (MLflow's default doubles from 4 s, so a 20 s restart
    # cost 28 s), ten of them: about 8 minutes in all. Its Prefect calls (the final state; the rest is
    # off the training's path) retry after 2, 4 ... 256 s, eight times (Prefect's default, five, gives up
    # after 62 s, less than a cold start of the server on a busy machine). Interactive surfaces (the
    # tenant API, the CLI) keep the libraries' defaults: a user would rather hear that a server is down.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "PREFECT_CLIENT_MAX_RETRIES": "8",
}
STATE_REFRESH_S = 1.0  # how often the state file's pids and restart counts are brought up to date
# A pid in a dead platform's state file is only stopped if its command line has one of these.
OUR_COMMANDS = ("prefect", "mlflow", "bentoml", "tenantml")


def check_home(home: Path) -> Path:
    """Create the home for this user alone (0700): it holds databases, tenants' datasets, keys' digests.

    The platform's processes get a umask of 077 too, so that what they write there is 0600.
    """
    home = home.resolve()
    os.umask(0o077)
    try:
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        probe = home / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise HomeNotWritable(str(home), err.strerror or str(err)) from err
    for sub in ("logs", "prefect", "mlflow/artifacts", "datasets"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return home


def platform_env(
    settings: Settings, home: Path, prefect_api_url: str, mlflow_uri: str, project: Path,
    credentials: Credentials | None = None,
) -> dict[str, str]:
    """The environment every child process gets: where the servers are, the platform's client
    credentials (none of the operator's shell), and quiet defaults."""
    env = {k: v for k, v in without_credentials(os.environ).items()
           if not k.startswith("PREFECT_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(settings.to_env())
    credentials = credentials or read_credentials(home)
    if credentials is not None:
        env.update(credentials.client_env())
    env.update({
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": str(settings.prefect.worker_query_seconds),
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "10",
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"),
        "TENANTML_HOME": str(home),
        PROJECT_DIR_VARIABLE: str(project),
        "TENANTML_PREFECT__API_URL": prefect_api_url,
        "TENANTML_MLFLOW__TRACKING_URI": mlflow_uri,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@dataclass
class EmbeddedPlatform:
    settings: Settings
    state: PlatformState | None = None
    workers: LocalWorkers | None = None
    keeper: Keeper = field(default_factory=Keeper)  # the servers, restarted when they exit
    _shown: tuple[object, ...] = ()  # what the state file says now
    _state_lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None
    _stop_supervising: threading.Event = field(default_factory=threading.Event)
    _release_lease: bool = True
    _fleet: FleetLoop | None = None

    @property
    def services(self) -> list[Service]:
        """Every process this platform runs: servers (in the order they started), then workers."""
        return [*self.keeper.services, *(self.workers.services if self.workers else [])]

    def start(self, serve_inference: bool = True) -> PlatformState:
        home = check_home(self.settings.home)
        self._refuse_if_running(home)
        preflight.run_checks(self.settings, home)  # a wrong setting stops us here, before any process starts
        try:
            return self._start(home, project_dir(), serve_inference)
        except BaseException:
            self.stop()
            raise

    def _start(self, home: Path, project: Path, serve_inference: bool) -> PlatformState:
        settings = self.settings
        prefect_port = claim_port("Prefect server", settings.prefect.port)
        mlflow_port = claim_port("MLflow server", settings.mlflow.port)
        serving_port = claim_port("inference service", settings.serving.port) if serve_inference else None
        tenant_api_port = claim_port("tenant API", settings.tenant_api.port)
        prefect_api = f"http://{settings.bind_host}:{prefect_port}/api"
        mlflow_uri = f"http://{settings.bind_host}:{mlflow_port}"
        credentials = ensure_credentials(home)
        credentials.export()  # this process's own clients: the supervisor, the provisioner, set-up
        env = platform_env(settings, home, prefect_api, mlflow_uri, project, credentials)
        logs = home / "logs"
        self._start_servers(env, home, project, prefect_port, mlflow_port, credentials)
        self._prepare(env, project, prefect_api, logs)
        self._start_access_sync(mlflow_uri, credentials)
        runs_env = {**env, **RIDE_OUT}  # workers, and the flow runs they start
        if settings.prefect.fork_server:
            self.keeper.keep(fork_server.start(runs_env, home, logs, project),
                             lambda: fork_server.launch(runs_env, home, logs, project),
                             lambda service: fork_server.wait_ready(service, home))
        self.workers = LocalWorkers(settings.prefect, runs_env, logs, project, fleet=settings.fleet)
        self.workers.start_configured()  # each class's minimum with the provisioner, else the fixed counts
        # No home: the state file's worker pids are kept current by _refresh_state, the one writer.
        self._fleet = FleetLoop.for_platform(settings, self.workers, prefect_api).start()
        inference_url = None
        if serving_port is not None:
            reader_env = {**without_credentials(env), **credentials.inference_env()}  # reads MLflow, no Prefect
            inference = self._keep(lambda: inference_server(serving_port, reader_env, home, project, logs))
            inference.wait_ready()
            inference_url = inference.url
        tenant_api = self._keep(lambda: tenant_api_server(tenant_api_port, env, logs, project))  # its own process
        tenant_api.wait_ready()
        self.state = PlatformState(
            home=str(home),
            supervisor_pid=os.getpid(),
            prefect_api_url=prefect_api,
            prefect_ui_url=f"http://{settings.bind_host}:{prefect_port}",
            mlflow_tracking_uri=mlflow_uri,
            inference_url=inference_url,
            tenant_api_url=tenant_api.url,
            pids={s.name: s.pid for s in self.services},
            started_at=time.time(),
            services={name: record.to_dict() for name, record in self.keeper.records().items()},
        )
        write_state(self.state)
        self.keeper.on_change = self._refresh_state
        self.keeper.start()
        threading.Thread(target=self._keep_state_current, name="platform-state", daemon=True).start()
        self.start_supervisor()
        return self.state

    def _keep(self, start: Callable[[], Server]) -> Server:
        """Start a server and keep it: the keeper starts it again with ``start`` (same port, same environment)
        when it exits, and waits for the same health check. Stopped with the platform even if never ready."""
        server = start()
        self.keeper.keep(server.service, lambda: start().service,
                          lambda service: wait_healthy(service, server.health_url, RESTART_READY_S))
        return server

    def _refresh_state(self) -> None:
        """Write the current pids, each kept service's record and the workers' restarts, if any changed."""
        if self.state is None:
            return
        with self._state_lock:
            pids = {s.name: s.pid for s in self.services}
            services = {name: record.to_dict() for name, record in self.keeper.records().items()}
            restarts = dict(self.workers.restarts) if self.workers else {}
            if (pids, services, restarts) == self._shown:
                return
            self._shown = (pids, services, restarts)
            update_state(self.settings.home, lambda state: state if state.supervisor_pid != os.getpid()
                         else replace(state, pids=pids, services=services, worker_restarts=restarts))

    def _keep_state_current(self) -> None:
        """Workers come and go with the provisioner; servers report their restarts through the keeper."""
        while not self._stopping.wait(STATE_REFRESH_S):
            try:
                self._refresh_state()
            except Exception:  # a full disk, a home removed under us: the next round tries again
                log.warning("could not update the platform's state file", exc_info=True)

    def _start_servers(self, env: dict[str, str], home: Path, project: Path, prefect_port: int,
                       mlflow_port: int, credentials: Credentials) -> None:
        """Prefect and MLflow side by side, both closed to anonymous callers; returns once both answer
        their health checks and MLflow knows the platform's two identities."""
        from tenantml.adapters.mlflow_access import PLATFORM_GRANTS, READER_GRANTS, ensure_identity

        database_url = self.settings.prefect.database_url
        logs = home / "logs"
        prefect = self._keep(lambda: prefect_server(
            prefect_port, env, home / "prefect", logs, project,
            database_url.get_secret_value() if database_url is not None else None,
            auth_string=credentials.prefect_auth_string.get_secret_value(), host=self.settings.bind_host))
        admin = credentials.admin
        auth = MlflowAuth(admin.username, admin.password.get_secret_value(),
                          credentials.mlflow_secret_key.get_secret_value(), self.settings.mlflow.auth_cache_ttl_s)
        artifacts = mlflow_artifacts(self.settings, home / "mlflow")
        mlflow = self._keep(lambda: mlflow_server(mlflow_port, env, home / "mlflow", logs, project, auth,
                                                  databases=self.settings.mlflow, artifacts=artifacts,
                                                  host=self.settings.bind_host))
        mlflow.wait_ready(SERVER_READY_S)
        admin_login = (admin.username, admin.password.get_secret_value())
        for identity, role, grants in ((credentials.platform, "tenantml-platform", PLATFORM_GRANTS),
                                       (credentials.inference, "tenantml-inference", READER_GRANTS)):
            ensure_identity(mlflow.url, admin_login, (identity.username, identity.password.get_secret_value()),
                            role, grants)
        prefect.wait_ready(SERVER_READY_S)

    def _start_access_sync(self, mlflow_uri: str, credentials: Credentials) -> None:
        """Every tenant's MLflow grants made exact now, then every ACCESS_SYNC_S in a thread: this bounds
        how long a name a tenant user claimed under another tenant's stays its (mlflow_tenants)."""
        from tenantml.adapters.mlflow_tenants import TenantAccess
        from tenantml.adapters.tenant_records import TenantRecords
        from tenantml.adapters.database import create_database

        admin = (credentials.admin.username, credentials.admin.password.get_secret_value())
        engine = create_database(self.settings.database_url, create_schema=False)
        records = TenantRecords(engine)

        def sync() -> None:
            with TenantAccess(mlflow_uri, admin) as access:
                access.sync(sorted(set(records.list_tenants()) - records.disabled_tenants()))

        sync()

        def forever() -> None:
            while not self._stopping.wait(ACCESS_SYNC_S):
                try:
                    sync()
                except Exception:  # MLflow restarting, a tenant deleted meanwhile: the next round retries
                    log.warning("syncing tenants' MLflow grants failed; retrying in %s s", ACCESS_SYNC_S,
                                exc_info=True)
            engine.dispose()

        threading.Thread(target=forever, name="mlflow-access-sync", daemon=True).start()

    def _prepare(self, env: dict[str, str], project: Path, prefect_api: str, logs: Path) -> None:
        """Our metadata schema, the work pools and the deployments, once, before any worker connects."""
        from tenantml.adapters.database import create_database

        create_database(self.settings.database_url).dispose()
        # With the fork server, flow runs start through the launcher, which hands them to it.
        command = f"{sys.executable} -m {launch.__name__}" if self.settings.prefect.fork_server else None
        asyncio.run(create_work_pools(prefect_api, self.settings.prefect, work_pool_template(project, command)))
        register_blocks(self.settings, prefect_api)  # the S3 storage's blocks (TENANTML_STORAGE__BACKEND=s3)
        deploy(project, env, logs)

    def _supervise_forever(self) -> None:
        """The training supervisor's loop (tenantml.services.supervisor), in this process, until stop().

        Its capacity is the local fleet's: the workers taking runs, drained ones left out. A second
        `tenantml up` on the same database would stand by on the lease.
        """
        from concurrent.futures import ThreadPoolExecutor

        from tenantml.bootstrap import Connection
        from tenantml.services.supervisor import supervise

        assert self.workers is not None and self.state is not None
        settings = self.settings.model_copy(update={
            "prefect": self.settings.prefect.model_copy(update={"api_url": self.state.prefect_api_url}),
            "mlflow": self.settings.mlflow.model_copy(update={"tracking_uri": self.state.mlflow_tracking_uri}),
        })
        training = settings.training
        with ThreadPoolExecutor(2, thread_name_prefix="finalize") as finalizing:
            kills = KernelMemoryKills(Path(settings.home))  # kernel OOM kills in the classes' run cgroups
            supervisor = Connection(settings).supervisor(self.workers, finalizing, memory_kills=kills)
            supervise(supervisor, f"tenantml-up:{os.getpid()}", self._stop_supervising.wait,
                      training.watch_interval_s, training.supervisor_timeout_s, release=lambda: self._release_lease)

    def start_supervisor(self) -> None:
        """Run the training supervisor in a thread of this process, unless it runs already."""
        if self._supervisor is not None and self._supervisor.is_alive():
            return
        self._stop_supervising.clear()
        self._release_lease = True
        self._supervisor = threading.Thread(target=self._supervise_forever, name="training-supervisor", daemon=True)
        self._supervisor.start()

    def stop_supervisor(self, release_lease: bool = True) -> None:
        """Stop this platform's training supervisor (trainings go on; nobody watches them). Without
        ``release_lease`` its lease stays until it is stale, as when the process dies."""
        self._release_lease = release_lease
        self._stop_supervising.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=30)

    def stop(self) -> None:
        """The supervisor first (it releases its lease), then the workers (so no new run starts), then the
        servers; every process by pid. No server is restarted from the first line on."""
        self._stopping.set()
        servers = self.keeper.stop()
        if self._fleet is not None:
            self._fleet.stop()  # no worker started, replaced or stopped from here on
        self.stop_supervisor(self._release_lease)
        if self.workers is not None:
            self.workers.stop_all()
        stop_services(list(reversed(servers)))
        self.keeper.join()
        state = read_state(self.settings.home)
        if state and state.supervisor_pid == os.getpid():
            remove_state(self.settings.home)

    def _refuse_if_running(self, home: Path) -> None:
        state = read_state(home)
        if state is None:
            return
        pid = state.supervisor_pid
        if pid and psutil.pid_exists(pid) and pid != os.getpid():
            raise PlatformError(f"a platform is already running on home {home} (pid {pid}): stop it first")
        # left by a platform that died: stop what it started that still runs on this home's files
        stopped = stop_leftovers(state.pids, home / "logs", OUR_COMMANDS)
        if stopped:
            log.warning("stopped %s, left running by a platform that died", ", ".join(stopped))
        remove_state(home)
