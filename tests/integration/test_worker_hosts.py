"""Workers on other hosts: two worker hosts, each a network namespace with an address, a ``PREFECT_HOME``
and a work folder of its own, given only the server host's addresses and the platform's client
credentials, run ``tenantml worker start`` against a platform served on the bridge address.

The metadata database is reached through a TCP forwarder on the bridge (PostgreSQL listens on
127.0.0.1 only): it plays the database host. The namespaces share the file system, and the hosts'
``datasets`` folders point at the server host's (datasets are local files today: see the README's
"Worker hosts"); checkpoints go through MLflow's HTTP API like everything else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tenantml.domain.request import AttemptEnd, RequestStatus, TrainingRequest
from tenantml.local.credentials import read_credentials
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.local.project import project_dir
from tenantml.settings import load_settings
from tests.support.netns import Host, Network, network, unavailable
from tests.support.platform import TENANTML, RunningPlatform, classification_frame, start_platform
from tests.support.postgres import temporary_database
from tests.support.tcp_forward import forward
from tests.support.waiting import flow_run_pid, wait_for

UNAVAILABLE = unavailable()
pytestmark = [pytest.mark.integration, pytest.mark.system,
              pytest.mark.skipif(UNAVAILABLE is not None, reason=f"worker hosts need network namespaces: {UNAVAILABLE}")]

LOST = {AttemptEnd.CRASHED, AttemptEnd.HEARTBEAT_LOST}
ROWS, EPOCHS = 3_000, 12  # 10 steps an epoch
TRAINING = {"heartbeat_timeout_s": 6, "checkpoint_interval_s": 2, "start_timeout_s": 180, "supervisor_timeout_s": 12}
HOST_START_S = 420  # a Prefect worker took over 3 min to start at a load of 40
STOP_S = 30


@dataclass
class Cluster:
    network: Network
    platform: RunningPlatform
    server_home: Path
    database_url: str  # as the worker hosts reach it: through the forwarder on the bridge


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("server-host")
    with network(2) as net, temporary_database("tenantml_hosts") as database, \
            forward(net.gateway, "127.0.0.1", 5432) as db_port:
        settings = load_settings(
            home=home, bind_host=net.gateway,
            database={"url": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"},
            training=TRAINING,
            prefect={"small_workers": 0, "large_workers": 0, "remote_small_workers": 2},  # all training elsewhere
            fleet={"provisioner": False},
        )
        embedded: EmbeddedPlatform | None = None
        try:
            embedded, running = start_platform(settings)
            yield Cluster(net, running, home, f"postgresql+psycopg://postgres@{net.gateway}:{db_port}/{database}")
        finally:
            if embedded is not None:
                embedded.stop()


@dataclass
class WorkerHost:
    host: Host
    name: str
    home: Path
    process: subprocess.Popen[bytes]

    def worker_logs(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted((self.home / "logs").glob("worker-*.log")))

    def ran(self, flow_run_id: str) -> bool:
        """Whether this host's worker took the flow run (Prefect's worker logs each one it submits)."""
        return f"submitting flow run '{flow_run_id}'" in self.worker_logs()


def _start_host(cluster: Cluster, host: Host, home: Path) -> WorkerHost:
    """`tenantml worker start` inside the host's network, with only the servers' addresses and credentials."""
    credentials = read_credentials(cluster.server_home)
    assert credentials is not None
    home.mkdir(mode=0o700)
    (home / "datasets").symlink_to(cluster.server_home / "datasets")  # shared storage, as the README says
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTML_", "PREFECT_", "MLFLOW_"))}
    env.update({
        "TENANTML_HOME": str(home),
        "TENANTML_PREFECT__API_URL": cluster.platform.prefect_api_url,
        "TENANTML_MLFLOW__TRACKING_URI": cluster.platform.mlflow_uri,
        "TENANTML_DATABASE__URL": cluster.database_url,
        **{f"TENANTML_TRAINING__{name.upper()}": str(value) for name, value in TRAINING.items()},
        **credentials.client_env(),
    })
    name = f"h{host.address.rsplit('.', 1)[1]}-{uuid.uuid4().hex[:4]}"
    with (home / "worker-host.log").open("wb") as log:
        process = subprocess.Popen(host.command(TENANTML, "worker", "start", "--class", "small", "--name", name),
                                   env=env, cwd=project_dir(), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return WorkerHost(host, name, home, process)


def _ready(started: list[WorkerHost]) -> bool:
    for worker_host in started:
        if worker_host.process.poll() is not None:
            raise AssertionError(f"worker host {worker_host.name} exited with {worker_host.process.returncode}: "
                                 f"{(worker_host.home / 'worker-host.log').read_text()[-3000:]}")
    return all("started!" in worker_host.worker_logs() for worker_host in started)


@pytest.fixture
def hosts(cluster: Cluster, tmp_path: Path) -> Iterator[list[WorkerHost]]:
    started: list[WorkerHost] = []
    try:
        for number, host in enumerate(cluster.network.hosts):  # side by side: each starts in seconds to a minute
            started.append(_start_host(cluster, host, tmp_path / f"host-{number}"))
        wait_for(lambda: _ready(started), HOST_START_S, "both worker hosts' Prefect workers to start", every_s=0.5)
        yield started
    finally:
        for worker_host in started:
            if worker_host.process.poll() is None:
                os.kill(worker_host.process.pid, signal.SIGTERM)
        for worker_host in started:
            try:
                worker_host.process.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                pass
            worker_host.host.kill_all()  # whatever is left: flow runs the workers were running, a hung worker


def _checkpointed(cluster: Cluster, request_id: str, after_epoch: int = 0) -> tuple[TrainingRequest, int | None]:
    """The request once an attempt past ``after_epoch`` has committed a checkpoint of its own, with the pid of
    its process; or once it completed (a fast machine may finish the rest first: pid None)."""
    def ready() -> tuple[TrainingRequest, int | None] | None:
        request = cluster.platform.request(request_id)
        attempt = request.current_attempt
        if request.status is RequestStatus.COMPLETED and request.epoch > after_epoch > 0:
            return request, None
        if request.status.is_terminal:
            raise AssertionError(f"request {request_id} ended early: {request.status} {request.reason}")
        if request.epoch <= after_epoch or not (attempt and attempt.flow_run_id and request.checkpoint):
            return None
        if f"lease-{request.epoch}/" not in request.checkpoint.uri:
            return None
        pid = flow_run_pid(attempt.flow_run_id)
        return (request, pid) if pid else None

    return wait_for(ready, 300, f"request {request_id} to train past a checkpoint (epoch > {after_epoch})")


def _host_of(pid: int | None, hosts: list[WorkerHost]) -> WorkerHost:
    owners = [worker_host for worker_host in hosts if pid is not None and worker_host.host.owns(pid)]
    assert len(owners) == 1, f"pid {pid} runs on {len(owners)} worker hosts"
    return owners[0]


def _ran_on(worker_host: WorkerHost, worker_uuid: str | None) -> bool:
    """Whether the attempt with ``worker_uuid`` started on the host: its flow run's output is in the worker's log."""
    return worker_uuid is not None and f"worker {worker_uuid} (epoch" in worker_host.worker_logs()


def _submit(platform: RunningPlatform, epochs: int) -> str:
    tenant = platform.new_tenant()
    frame = classification_frame(rows=ROWS)
    return platform.submit(tenant, platform.dataset(tenant, frame), epochs=epochs).request_id


def _exited(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_trainings_run_on_both_hosts_and_a_killed_hosts_resume_on_the_other(
    cluster: Cluster, hosts: list[WorkerHost]
) -> None:
    first = _submit(cluster.platform, EPOCHS)
    request_a, pid_a = _checkpointed(cluster, first)
    host_a = _host_of(pid_a, hosts)
    host_b = next(worker_host for worker_host in hosts if worker_host is not host_a)
    second = _submit(cluster.platform, EPOCHS // 2)  # host A is busy (one run a worker): it goes to host B

    killed = host_a.host.kill_all()  # every process of the host: the worker host, its worker, fork server, run
    assert {host_a.process.pid, pid_a} <= set(killed)

    other = cluster.platform.wait_done(second, timeout_s=300)
    assert other.status is RequestStatus.COMPLETED, other.reason
    assert _ran_on(host_b, other.attempts[-1].worker_uuid), "the second training did not run on the second host"
    final = cluster.platform.wait_done(first, timeout_s=300)
    assert final.status is RequestStatus.COMPLETED, final.reason
    killed_attempt = next(a for a in final.attempts if a.epoch == request_a.epoch)  # an earlier one may have failed
    assert killed_attempt.end in LOST, killed_attempt
    assert _ran_on(host_a, killed_attempt.worker_uuid)
    assert _ran_on(host_b, final.attempts[-1].worker_uuid), "the killed host's training did not resume on the other host"
    assert final.attempts[-1].resume_step >= request_a.checkpoint.step > 0  # type: ignore[union-attr]


def _lease_files(server_home: Path, epoch: int, run_id: str) -> set[str]:
    """The checkpoint files lease ``epoch`` uploaded into the request's MLflow run."""
    return {str(path) for path in (server_home / "mlflow" / "artifacts").rglob(f"{run_id}/**/lease-{epoch}/*")}


def test_a_cut_off_host_is_fenced_its_training_resumes_elsewhere_and_it_writes_nothing_after_healing(
    cluster: Cluster, hosts: list[WorkerHost]
) -> None:
    request_id = _submit(cluster.platform, EPOCHS)
    old, pid = _checkpointed(cluster, request_id)
    assert pid is not None
    host_a = _host_of(pid, hosts)
    host_b = next(worker_host for worker_host in hosts if worker_host is not host_a)

    host_a.host.cut()
    try:
        new, _ = _checkpointed(cluster, request_id, after_epoch=old.epoch)  # failed over, and trained on
        new_uuid = new.attempts[-1].worker_uuid
        wait_for(lambda: _ran_on(host_b, new_uuid), 60, "the new attempt to show in host B's log")
        assert not _exited(pid), "the cut-off training should still be running, unable to reach anyone"
        old_files = _lease_files(cluster.server_home, old.epoch, str(old.mlflow_run_id))
    finally:
        host_a.host.heal()

    seen: list[TrainingRequest] = []

    def fenced_and_gone() -> bool:
        seen.append(cluster.platform.request(request_id))
        return _exited(pid)

    wait_for(fenced_and_gone, 180, f"the cut-off training (pid {pid}) to exit once healed")
    seen.append(cluster.platform.request(request_id))
    stale = [r for r in seen if r.epoch != new.epoch or r.attempts[-1].worker_uuid != new_uuid
             or r.checkpoint is None or f"lease-{new.epoch}/" not in r.checkpoint.uri]
    progress = [(r.checkpoint.step if r.checkpoint else 0, r.step) for r in seen]
    old_ends = {next((a.end, a.reason) for a in r.attempts if a.epoch == old.epoch) for r in seen}
    # An upload the cut caught half-way may still land after healing, in the old lease's own folder: nothing
    # points at it (the pointer's write is fenced: `stale` below), and pruning removes it. Counted, not refused.
    late_files = _lease_files(cluster.server_home, old.epoch, str(old.mlflow_run_id)) - old_files
    print(f"after healing: {len(seen)} reads of the request, {len(stale)} stale, {len(late_files)} late checkpoint "
          f"files; the cut-off host logged its refusal: {'was fenced off' in host_a.worker_logs()}")
    assert not stale, f"the cut-off worker's writes reached the metadata: {stale[0]}"
    for name, values in (("checkpoint", [c for c, _ in progress]), ("heartbeat", [h for _, h in progress])):
        assert values == sorted(values), f"the new lease's {name} step went back: {values}"
    assert len(old_ends) == 1 and next(iter(old_ends))[0] is AttemptEnd.HEARTBEAT_LOST, old_ends

    final = cluster.platform.wait_done(request_id, timeout_s=300)
    assert final.status is RequestStatus.COMPLETED, final.reason
    assert final.attempts[-1].worker_uuid == new_uuid and f"lease-{new.epoch}/" in final.checkpoint.uri  # type: ignore[union-attr]
