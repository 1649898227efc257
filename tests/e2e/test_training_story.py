"""One training's story with one failover, read through the Prefect API the way the UI shows it.

The issue asked for "the master run": since the training supervisor (services/supervisor.py)
replaced the per-request master flow run, a training's Prefect story is its attempt runs
(``training-worker``, named ``<tenant>/<model> attempt N (<class>)``, tagged ``tenant:``,
``model:``, ``request:``), the supervisor's decisions written into each attempt run's log, and the
attempts table artifact ``attempts-<request>``, a new version on every change linked to the
current attempt's run. So this test checks those: the names and tags of both attempt runs, the
link between them (the same request tag, the attempts artifact's versions on both runs, the step
the first run's failover line queues and the second run's dispatch line resumes from), a log line
for each decision, the table's columns, and that the UI's Retry on the fenced first run ends it
Cancelled ("superseded by attempt 2") without touching the progress artifact or the request.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import AwaitingRetry
from sklearn.datasets import make_classification

from tenantml.adapters.database import create_database
from tenantml.adapters.store import Store
from tenantml.domain.request import AttemptEnd, RequestStatus, TrainingRequest
from tests.support.platform import TENANTML, Up
from tests.support.prefect_api import prefect_client, request_runs
from tests.support.waiting import flow_run_pid, wait_for

pytestmark = pytest.mark.e2e

MODEL = "churn"
COLUMNS = ["#", "worker", "class", "lease", "started", "outcome", "reason", "steps", "redone", "took"]
LOST = {AttemptEnd.CRASHED.value, AttemptEnd.HEARTBEAT_LOST.value}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([TENANTML, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"tenantml {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result


def _store(up: Up) -> Store:
    return Store(create_database(f"sqlite:///{up.home.resolve() / 'tenantml.db'}"))


def _messages(client: SyncPrefectClient, run: FlowRun) -> list[str]:
    logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), limit=200)
    return [log.message for log in logs]


def _artifacts(client: SyncPrefectClient, key: str) -> list[Any]:
    found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return sorted(found, key=lambda artifact: artifact.created)


def _start_training(up: dict[str, str], tmp_path: Path) -> tuple[str, str]:
    tenant = f"story-{uuid.uuid4().hex[:8]}"
    run(up, "tenant", "create", tenant, "--json")
    x, y = make_classification(n_samples=20_000, n_features=10, n_informative=6, random_state=5)
    pd.DataFrame(x, columns=[f"f{i}" for i in range(10)]).assign(label=y).to_csv(tmp_path / "story.csv", index=False)
    run(up, "dataset", "add", "--tenant", tenant, str(tmp_path / "story.csv"))
    started = json.loads(run(up, "train", "--tenant", tenant, "--model", MODEL, "--dataset", "story.csv",
                             "--target", "label", "--algorithm", "sgd_classifier", "--param", "epochs=20",
                             "--json").stdout)
    return tenant, started["request_id"]


def _kill_after_a_checkpoint(store: Store, request_id: str) -> TrainingRequest:
    """SIGKILL the first attempt's training process once it has committed a checkpoint (as a lost machine)."""
    def ready() -> tuple[TrainingRequest, int] | None:
        request = store.get_request(request_id)
        attempt = request.current_attempt
        assert not request.status.is_terminal, f"the training ended before the failover: {request.status}"
        if not (request.checkpoint and request.checkpoint.step > 0 and attempt and attempt.flow_run_id):
            return None
        pid = flow_run_pid(attempt.flow_run_id)
        return (request, pid) if pid else None

    request, pid = wait_for(ready, 300, f"a checkpoint of request {request_id}", every_s=0.5)
    os.kill(pid, signal.SIGKILL)
    return request


def test_a_failover_told_through_prefect_runs_logs_and_artifacts(platform_up: Up, tmp_path: Path) -> None:
    store = _store(platform_up)
    tenant, request_id = _start_training(platform_up.env, tmp_path)
    killed = _kill_after_a_checkpoint(store, request_id)
    def finalized() -> TrainingRequest | None:
        request = store.get_request(request_id)
        return request if request.finalized_at else None

    final = wait_for(finalized, 420, "the training to end and be finalized", every_s=1)
    assert final.status is RequestStatus.COMPLETED, final.reason
    first, second = final.attempts
    killed_attempt, checkpoint = killed.current_attempt, killed.checkpoint
    assert killed_attempt is not None and checkpoint is not None
    assert first.end is not None and first.end.value in LOST and first.flow_run_id == killed_attempt.flow_run_id

    with prefect_client(platform_up) as client:
        # The runs: names and tags; the request's tag finds both (the UI's runs filter).
        attempts = {run.name: run for run in request_runs(client, request_id) if " attempt " in run.name}
        one, two = f"{tenant}/{MODEL} attempt 1 (small)", f"{tenant}/{MODEL} attempt 2 (small)"
        assert set(attempts) == {one, two}
        run1, run2 = attempts[one], attempts[two]
        assert (str(run1.id), str(run2.id)) == (first.flow_run_id, second.flow_run_id)
        for attempt_run in (run1, run2):
            assert {f"request:{request_id}", f"tenant:{tenant}", f"model:{MODEL}"} <= set(attempt_run.tags)
        assert run2.state_type is StateType.COMPLETED

        # A log line for each decision, in the run it concerns; the step the failover queues is the
        # step the next attempt resumes from.
        log1, log2 = _messages(client, run1), _messages(client, run2)
        assert any(m.startswith(f"dispatched attempt 1 of {tenant}/{MODEL} to a small worker: UUID "
                                f"{first.worker_uuid}, lease {first.epoch}") for m in log1), log1
        failover = next((m for m in log1 if m.startswith("UUID event ") and f"worker {first.worker_uuid} is fenced off"
                         in m), None)
        assert failover is not None, log1
        queued_at = int(re.search(r"queued to resume from step (\d+) on the small class", failover).group(1))  # type: ignore[union-attr]
        resumed = next((m for m in log2 if m.startswith(f"dispatched attempt 2 of {tenant}/{MODEL} to a small worker: "
                                                        f"UUID {second.worker_uuid}, lease {second.epoch}")), None)
        assert resumed is not None and resumed.endswith(f"resuming from step {queued_at}"), log2
        assert queued_at == second.resume_step >= checkpoint.step > 0
        assert any(m.startswith("finalized: version 1 registered") for m in log2), log2

        # The attempts table: its versions on both runs (the link), the latest on the second, its columns.
        versions = _artifacts(client, f"attempts-{request_id}")
        assert {str(v.flow_run_id) for v in versions if v.flow_run_id} == {first.flow_run_id, second.flow_run_id}
        latest = versions[-1]
        assert str(latest.flow_run_id) == second.flow_run_id
        rows = json.loads(latest.data) if isinstance(latest.data, str) else latest.data
        assert [list(row) for row in rows] == [COLUMNS, COLUMNS]
        assert [row["#"] for row in rows] == [1, 2]
        assert [row["worker"] for row in rows] == [first.worker_uuid[:8], second.worker_uuid[:8]]
        assert rows[0]["outcome"] in LOST and rows[1]["outcome"] == "completed"
        assert rows[1]["steps"].startswith(f"{second.resume_step} → ")

        # The UI's Retry on the fenced run (Prefect UI: `retryFlowRun`, an AwaitingRetry state, forced).
        progress_before = [(a.id, a.data, a.description, a.flow_run_id) for a in _artifacts(client, f"progress-{request_id}")]
        attempts_before = [a.id for a in versions]
        client.set_flow_run_state(run1.id, AwaitingRetry(message="Retry from the UI"), force=True)

        def ended_superseded() -> Any:
            state = client.read_flow_run(run1.id).state
            return state if state and state.type is StateType.CANCELLED and "superseded" in (state.message or "") else None

        state = wait_for(ended_superseded, 240, "the retried fenced run to end Cancelled", every_s=1)
        assert state.message == "superseded by attempt 2"
        progress_after = [(a.id, a.data, a.description, a.flow_run_id) for a in _artifacts(client, f"progress-{request_id}")]
        assert progress_after == progress_before
        assert progress_after and str(progress_after[-1][3]) != str(run1.id)
        late = [a for a in _artifacts(client, f"attempts-{request_id}") if a.id not in attempts_before]
        assert not [a for a in late if str(a.flow_run_id) == str(run1.id)]  # nothing new on the fenced run

    after = store.get_request(request_id)
    assert (after.status, after.model_version, len(after.attempts)) == (RequestStatus.COMPLETED, "1", 2)
