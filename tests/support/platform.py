"""A running embedded platform as tests and benchmarks drive it: tenants, datasets, submissions; and
`tenantml up` as a subprocess, as the e2e tests drive it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
from sklearn.datasets import make_classification

from tenantml.domain.request import TrainingRequest
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.bootstrap import Connection
from tenantml.local.credentials import credentials_file
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.local.project import project_dir
from tenantml.settings import Settings
from tenantml.services.admission import Admission, TrainingOrder, submit_training
from tests.support.waiting import wait_for

TENANTML = str(Path(sys.executable).parent / "tenantml")
UP_START_DEADLINE_S = 300
UP_STOP_DEADLINE_S = 90


@dataclass
class RunningPlatform:
    settings: Settings
    connection: Connection
    prefect_api_url: str
    mlflow_uri: str

    def new_tenant(self) -> str:
        name = "t-" + uuid.uuid4().hex[:10]
        self.connection.store.add_tenant(name, hash_api_key(new_api_key()), datetime.now(UTC))
        return name

    def dataset(self, tenant: str, frame: pd.DataFrame, name: str = "data.csv") -> str:
        prefix = self.connection.storage.prefix(tenant)
        prefix.mkdir(parents=True, exist_ok=True)
        frame.to_csv(prefix / name, index=False)
        return name

    def wide_dataset(self, tenant: str, rows: int, columns: int, name: str = "big.parquet") -> str:
        """A Parquet dataset of ``rows`` x ``columns`` random floats (8 bytes each), for memory tests."""
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(rng.standard_normal((rows, columns)), columns=[f"x{i}" for i in range(columns)])
        frame["label"] = (frame["x0"] > 0).astype(int)
        prefix = self.connection.storage.prefix(tenant)
        prefix.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(prefix / name)
        return name

    def submit(self, tenant: str, dataset: str, algorithm: str = "sgd_classifier", model: str = "m",
               force: bool = False, **params: object) -> Admission:
        order = TrainingOrder(tenant, model, dataset, "label", algorithm, dict(params), force)
        return submit_training(self.connection.store, self.connection.storage, order)

    def request(self, request_id: str) -> TrainingRequest:
        return self.connection.store.get_request(request_id)

    def wait_done(self, request_id: str, timeout_s: float = 240) -> TrainingRequest:
        """Wait until the request has ended and its master has finalized it (promotion, clean-up)."""
        return wait_for(lambda: (r := self.request(request_id)).status.is_terminal and r.finalized_at and r,
                        timeout_s, f"request {request_id} to end")


def classification_frame(rows: int = 20_000, features: int = 10, seed: int = 3) -> pd.DataFrame:
    x, y = make_classification(n_samples=rows, n_features=features, n_informative=6, random_state=seed)
    frame = pd.DataFrame(x.astype(np.float64), columns=[f"x{i}" for i in range(features)])
    frame["label"] = y
    return frame


_SHARED_CREDENTIALS: list[str] = []  # the first platform's credentials file, as text


def _share_credentials(home: Path) -> None:
    """Every platform a test process starts gets the same credentials.

    A platform makes its own process a client of its servers through the environment (the
    MLflow and Prefect clients read their credentials from it), so a second platform in the same
    process would otherwise leave the first one's in-process supervisor with the wrong secrets.
    `tenantml up` runs one platform per process and never needs this.
    """
    target = credentials_file(home)
    if _SHARED_CREDENTIALS and not target.exists():
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(_SHARED_CREDENTIALS[0])


def start_platform(settings: Settings, serve_inference: bool = False) -> tuple[EmbeddedPlatform, RunningPlatform]:
    """Start an embedded platform (without the inference service unless asked); the caller stops the first element."""
    _share_credentials(settings.home)
    embedded = EmbeddedPlatform(settings)
    try:
        state = embedded.start(serve_inference=serve_inference)
    except BaseException:
        embedded.stop()
        raise
    if not _SHARED_CREDENTIALS:
        _SHARED_CREDENTIALS.append(credentials_file(settings.home).read_text())
    connected = settings.model_copy(update={
        "mlflow": settings.mlflow.model_copy(update={"tracking_uri": str(state.mlflow_tracking_uri)}),
        "prefect": settings.prefect.model_copy(update={"api_url": str(state.prefect_api_url)}),
    })
    return embedded, RunningPlatform(connected, Connection(connected), str(state.prefect_api_url),
                                     str(state.mlflow_tracking_uri))


# -- `tenantml up` as a subprocess ----------------------------------------------------------
@dataclass(frozen=True)
class Up:
    """A running `tenantml up`: the environment that reaches it, its status when it got healthy, its output."""

    env: dict[str, str]
    status: dict[str, Any]
    home: Path
    log: Path


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTML_", "PREFECT_", "MLFLOW_", "BENTOML_"))}
    env.update(TENANTML_HOME=str(home), BENTOML_DO_NOT_TRACK="true",
               TENANTML_PREFECT__SMALL_WORKERS="1", TENANTML_PREFECT__LARGE_WORKERS="0")
    return env


def _healthy(up: subprocess.Popen[bytes], env: dict[str, str]) -> dict[str, Any] | None:
    if up.poll() is not None:
        raise AssertionError(f"`tenantml up` exited with {up.returncode}")
    status = subprocess.run([TENANTML, "status", "--json"], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    if status.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(status.stdout)
    return found if found["healthy"] and found.get("inference_url") else None


def _stop(up: subprocess.Popen[bytes]) -> list[tuple[int, str]]:
    """Ctrl-C by pid, then SIGTERM and SIGKILL if it hangs; returns the processes that were still alive."""
    try:
        tree = [psutil.Process(up.pid), *psutil.Process(up.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for sig, wait_s in ((signal.SIGINT, UP_STOP_DEADLINE_S), (signal.SIGTERM, 15)):
        if up.poll() is not None:
            break
        os.kill(up.pid, sig)
        try:
            up.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    _, alive = psutil.wait_procs(tree, timeout=30)
    left = []
    for proc in alive:  # leave nothing behind, but report it
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                left.append((proc.pid, proc.name()))
                proc.kill()
        except psutil.NoSuchProcess:
            continue
    if up.poll() is None:
        up.kill()
        up.wait(timeout=10)
    return left


@contextmanager
def tenantml_up(home: Path) -> Iterator[Up]:
    """`tenantml up` with the inference service, healthy; on leaving, stopped with Ctrl-C and nothing left."""
    env = _environment(home)
    log = home / "up.log"
    with log.open("wb") as output:
        up = subprocess.Popen([TENANTML, "up"], env=env, cwd=project_dir(), stdout=output,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        try:
            status = wait_for(lambda: _healthy(up, env), UP_START_DEADLINE_S, "`tenantml up` to be healthy", every_s=1)
        except AssertionError as err:
            raise AssertionError(f"{err}; its output:\n{log.read_text()[-4000:]}") from None
        yield Up(env, status, home, log)
    finally:
        left = _stop(up)
    assert not left, f"processes left after stopping `tenantml up`: {left}"
    assert "tenantml stopped" in log.read_text()
