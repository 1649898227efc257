"""The embedded platform behind `tenantml up`: Prefect and MLflow servers, work pools, deployments,
process workers (and the inference service), all on 127.0.0.1, all stopped by pid.

Everything persistent lives under ``TENANTML_HOME``; starting again on the same home keeps every
record. A failure at any point stops whatever was already started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tenantml.errors import HomeNotWritable, PlatformError
from tenantml.local.state import PlatformState, read_state, remove_state, write_state
from tenantml.local.processes import Service, claim_port, start_service, stop_services
from tenantml.local.servers import inference_server, mlflow_server, prefect_server
from tenantml.settings import Settings

__all__ = ["EmbeddedPlatform", "platform_env"]

log = logging.getLogger(__name__)

WORKER_CLASSES = ("small", "large")


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def check_home(home: Path) -> Path:
    home = home.resolve()
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise HomeNotWritable(str(home), err.strerror or str(err)) from err
    for sub in ("logs", "prefect", "mlflow/artifacts", "datasets"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return home


def platform_env(settings: Settings, home: Path, prefect_api_url: str, mlflow_uri: str) -> dict[str, str]:
    """The environment every child process gets: where the servers are, and quiet defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(settings.to_env())
    env.update(
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_API_URL=prefect_api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS=str(settings.prefect.worker_query_seconds),
        PREFECT_WORKER_HEARTBEAT_SECONDS="10",
        PREFECT_LOGGING_LEVEL=os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"),
        TENANTML_HOME=str(home),
        TENANTML_PROJECT_DIR=str(settings.project_dir),
        TENANTML_PREFECT__API_URL=prefect_api_url,
        TENANTML_MLFLOW__TRACKING_URI=mlflow_uri,
        MLFLOW_TRACKING_URI=mlflow_uri,
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        BENTOML_DO_NOT_TRACK="true",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class EmbeddedPlatform:
    settings: Settings
    services: list[Service] = field(default_factory=list)
    state: PlatformState | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self, serve_inference: bool = True) -> PlatformState:
        home = check_home(self.settings.home)
        self._refuse_if_running(home)
        try:
            return self._start(home, serve_inference)
        except BaseException:
            self.stop()
            raise

    def _start(self, home: Path, serve_inference: bool) -> PlatformState:
        settings = self.settings
        prefect_port = claim_port("Prefect server", settings.prefect.port)
        mlflow_port = claim_port("MLflow server", settings.mlflow.port)
        serving_port = claim_port("inference service", settings.serving.port) if serve_inference else None
        prefect_api = f"http://127.0.0.1:{prefect_port}/api"
        mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
        env = platform_env(settings, home, prefect_api, mlflow_uri)
        logs = home / "logs"
        cwd = settings.project_dir

        database_url = settings.prefect.database_url
        prefect = prefect_server(prefect_port, env, home / "prefect", logs, cwd,
                                 database_url.get_secret_value() if database_url is not None else None)
        self.services.append(prefect.service)
        mlflow = mlflow_server(mlflow_port, env, home / "mlflow", logs, cwd)
        self.services.append(mlflow.service)
        mlflow.wait_ready(120)
        prefect.wait_ready(120)

        # Our own metadata schema, once, before any worker connects.
        from tenantml.adapters.database import create_database

        create_database(settings.database_url).dispose()
        asyncio.run(_create_work_pools(prefect_api, settings))
        self._deploy(env, logs)

        prefect_settings = settings.prefect
        if prefect_settings.fork_server:
            self._start_fork_server(env, home)
        self._worker(env, "master-1", prefect_settings.master_pool, "default", 50)
        for worker_class, count in (("small", prefect_settings.small_workers), ("large", prefect_settings.large_workers)):
            for n in range(1, count + 1):
                self._worker(env, f"{worker_class}-{n}", prefect_settings.training_pool, worker_class,
                             prefect_settings.runs_per_worker)
        inference_url = None
        if serving_port is not None:
            inference_url = self._serve(env, serving_port)
        self.state = PlatformState(
            home=str(home),
            supervisor_pid=os.getpid(),
            prefect_api_url=prefect_api,
            prefect_ui_url=f"http://127.0.0.1:{prefect_port}",
            mlflow_tracking_uri=mlflow_uri,
            inference_url=inference_url,
            pids={s.name: s.pid for s in self.services},
            started_at=time.time(),
        )
        write_state(self.state)
        threading.Thread(target=self._reconcile_forever, args=(prefect_api,), name="reconciler", daemon=True).start()
        return self.state

    def _reconcile_forever(self, prefect_api: str, every_s: float = 3.0) -> None:
        """Start a new master for any request whose master died (see tenantml.services.reconcile)."""
        from tenantml.adapters.orchestration import submit_master
        from tenantml.bootstrap import Connection
        from tenantml.services.reconcile import reconcile

        store = Connection(self.settings).store
        while not self._stopping.wait(every_s):
            try:
                restarted = reconcile(
                    store,
                    lambda request_id, key: submit_master({"request_id": request_id}, key, prefect_api),
                    datetime.now(UTC),
                    self.settings.training.master_timeout_s,
                )
                if restarted:
                    log.warning("started new training masters for %s", ", ".join(restarted))
            except Exception:
                log.warning("reconciler pass failed", exc_info=True)

    def _start_fork_server(self, env: dict[str, str], home: Path) -> None:
        from tenantml.local.fork_server import socket_path

        socket_path(home).unlink(missing_ok=True)  # a stale socket must not look like a ready server
        fork_server = start_service("fork-server", [sys.executable, "-m", "tenantml.local.fork_server"], env,
                               home / "logs", self.settings.project_dir)
        self.services.append(fork_server)
        end = time.monotonic() + 120
        while not socket_path(home).exists():
            if not fork_server.alive() or time.monotonic() > end:
                raise PlatformError(f"the flow-run fork server did not start; see {fork_server.log_path}")
            time.sleep(0.1)

    def _deploy(self, env: dict[str, str], logs: Path) -> None:
        result = subprocess.run(
            [_bin("prefect"), "--no-prompt", "deploy", "--all"],
            env=env, cwd=self.settings.project_dir, capture_output=True, text=True, timeout=300,
        )
        (logs / "prefect-deploy.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise PlatformError(f"applying prefect.yaml failed (exit {result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")

    def _worker(self, env: dict[str, str], name: str, pool: str, queue: str, limit: int) -> None:
        self.services.append(
            start_service(
                f"worker-{name}",
                [_bin("prefect"), "worker", "start", "--pool", pool, "--work-queue", queue, "--type", "process",
                 "--limit", str(limit), "--name", name, "--install-policy", "never"],
                env, self.settings.home.resolve() / "logs", self.settings.project_dir,
            )
        )

    def _serve(self, env: dict[str, str], port: int) -> str:
        home = self.settings.home.resolve()
        inference = inference_server(port, env, home, self.settings.project_dir, home / "logs")
        self.services.append(inference.service)  # stopped with the platform, even if it never gets ready
        return inference.wait_ready().url

    def stop(self) -> None:
        """Workers first (so no new run starts), then the servers; every process by pid."""
        self._stopping.set()
        workers = [s for s in self.services if s.name.startswith("worker-")]
        others = [s for s in self.services if not s.name.startswith("worker-")]
        stop_services(workers)
        stop_services(list(reversed(others)))
        self.services.clear()
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
        leftovers = []
        for name, child in state.pids.items():
            try:
                process = psutil.Process(int(child))
                if any(word in " ".join(process.cmdline()) for word in ("prefect", "mlflow", "bentoml", "tenantml")):
                    leftovers.append(Service(name, _Adopted(process), home / "logs" / f"{name}.log"))
            except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
                continue
        if leftovers:
            log.warning("stopping %s left running by a platform that died", ", ".join(s.name for s in leftovers))
            stop_services(leftovers)
        remove_state(home)


class _Adopted:
    """A process this platform did not start, looked at through the little of Popen that stopping needs."""

    def __init__(self, process: psutil.Process) -> None:
        self.pid, self._process = process.pid, process
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return None if self._process.is_running() else 0

    def wait(self, timeout: float | None = None) -> int:
        with contextlib.suppress(psutil.NoSuchProcess):
            self._process.wait(timeout)
        return 0


async def _create_work_pools(api_url: str, settings: Settings) -> None:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    template = json.loads((settings.project_dir / "infra" / "work-pools" / "process.json").read_text())
    if settings.prefect.fork_server:  # flow runs start through the launcher, which uses the fork server
        template["variables"]["properties"]["command"]["default"] = f"{sys.executable} -m tenantml.local.launch"
    async with PrefectClient(api_url) as client:
        for pool in (settings.prefect.master_pool, settings.prefect.training_pool):
            await client.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template), overwrite=True
            )
        for queue in WORKER_CLASSES:
            try:
                await client.create_work_queue(name=queue, work_pool_name=settings.prefect.training_pool)
            except ObjectAlreadyExists:
                pass
