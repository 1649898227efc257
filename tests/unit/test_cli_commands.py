"""The `tenantml` command in-process on a real SQLite store in a temporary home (no servers).

Typer's CliRunner shows what a command prints; :func:`tenantml.cli.main` shows the exit codes its
errors map to. Nothing here needs Prefect or MLflow: the commands that do are refused before they
write anything, which is one of the behaviours under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tenantml.adapters.store import Store
from tenantml.cli import app, main
from tenantml.domain.request import Lease, RequestStatus, TrainingRequest, TrainingSpec, WorkerClass
from tenantml.services.trainings import request_view

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TENANTML_HOME, and no other TENANTML_* or PREFECT_* variable: no platform is running."""
    for name in [n for n in os.environ if n.startswith(("TENANTML_", "PREFECT_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TENANTML_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def sqlite_url(home: Path) -> str:
    """The database of the home's settings (so ``store`` is the one the commands use)."""
    return f"sqlite:///{home.resolve() / 'tenantml.db'}"


def tenantml(*args: str, api_key: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env={"TENANTML_API_KEY": api_key})


def created(tenant: str) -> str:
    """Create ``tenant`` through the command; returns its API key."""
    result = tenantml("tenant", "create", tenant, "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["tenant"] == tenant
    return str(answer["api_key"])


def pending(store: Store, tenant: str) -> str:
    spec = TrainingSpec(tenant, "churn", f"/d/{tenant}.csv", "y", "sgd_classifier", {}, "0" * 64)
    request = TrainingRequest(str(uuid.uuid4()), spec, RequestStatus.PENDING, NOW, NOW)
    store.add_request(request)
    return request.id


def test_help_says_what_tenantml_is(home: Path) -> None:
    result = tenantml("--help")
    assert result.exit_code == 0
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith("Usage: tenantml")
    assert lines[1].startswith("tenantml trains machine-learning models for many tenants")


def test_a_tenant_is_created_once_and_its_key_acts_as_it(home: Path, tenant_name: str) -> None:
    api_key = created(tenant_name)
    assert api_key.startswith("tml_")
    assert [row["tenant"] for row in json.loads(tenantml("tenant", "list", "--json").stdout)] == [tenant_name]
    assert [line.split()[0] for line in tenantml("tenant", "list", api_key=api_key).stdout.splitlines()] == [
        "tenant", tenant_name
    ]
    again = tenantml("tenant", "create", tenant_name)
    assert again.exit_code == 1 and "already exists" in str(again.exception)


def test_a_dataset_is_added_under_its_name_in_the_tenants_storage(home: Path, tenant_name: str) -> None:
    created(tenant_name)
    (home / "churn.csv").write_text("x,label\n1,0\n2,1\n")
    added = tenantml("dataset", "add", "--tenant", tenant_name, "--name", "in/c.csv", str(home / "churn.csv"))
    assert added.exit_code == 0 and added.stdout.strip() == "in/c.csv"
    as_json = json.loads(tenantml("dataset", "add", "--tenant", tenant_name, "--json", str(home / "churn.csv")).stdout)
    assert as_json == {"tenant": tenant_name, "dataset": "churn.csv",
                       "path": str(home.resolve() / "datasets" / tenant_name / "churn.csv")}


def test_runs_show_the_requests_as_plain_text_off_a_terminal(home: Path, store: Store, tenant_name: str) -> None:
    created(tenant_name)
    request_id = pending(store, tenant_name)
    table = tenantml("runs").stdout.splitlines()
    assert table[0].split() == ["request", "tenant", "model", "status", "step", "attempts", "version", "created"]
    assert table[1].split() == [request_id, tenant_name, "churn", "pending", "0/?", "0", "2030-01-01", "00:00:00"]
    assert not any(char in "\n".join(table) for char in "\x1b─│━")  # no colour, no box
    listed = json.loads(tenantml("runs", "--json").stdout)
    assert listed == [json.loads(json.dumps({k: v for k, v in request_view(store.get_request(request_id)).items()
                                             if k != "attempts"}, default=str))]


def test_run_show_prints_the_request_and_its_attempts(home: Path, store: Store, tenant_name: str) -> None:
    created(tenant_name)
    request_id = pending(store, tenant_name)
    shown = json.loads(tenantml("run", "show", request_id, "--json").stdout)
    assert shown["request_id"] == request_id and shown["status"] == "pending" and shown["attempts"] == []
    text = tenantml("run", "show", request_id).stdout
    assert f"request_id: {request_id}" in text and "status: pending" in text and "metrics: -" in text
    assert "worker_uuid" in text.splitlines()[-1]  # the attempts table's header, with no rows yet


def test_a_tenant_key_cannot_see_another_tenants_request(home: Path, store: Store, tenant_name: str,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    created(tenant_name)
    other_key = created("t-other")
    request_id = pending(store, tenant_name)
    monkeypatch.setenv("TENANTML_API_KEY", other_key)
    assert main(["run", "show", request_id]) == 1
    assert main(["runs", "--tenant", tenant_name]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: no training request {request_id!r} for tenant 't-other'",
        f"error: tenant {tenant_name!r} is not visible with this API key",
    ]


def test_cancel_ends_a_request_once(home: Path, store: Store, tenant_name: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    created(tenant_name)
    request_id = pending(store, tenant_name)
    assert main(["run", "cancel", request_id]) == 0
    assert store.get_request(request_id).status is RequestStatus.CANCELLED
    assert main(["run", "cancel", request_id]) == 2
    out, err = capsys.readouterr()
    assert out.strip().endswith(f"request {request_id}: cancelled")
    assert err.strip() == f"error: request {request_id} has already ended (cancelled)"


def test_train_while_the_platform_is_down_queues_the_request_and_says_so(home: Path, tenant_name: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Requests wait in the metadata, so nothing needs Prefect at submission; but a queue nobody
    serves is worth a warning that names the fix."""
    created(tenant_name)
    (home / "churn.csv").write_text("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    tenantml("dataset", "add", "--tenant", tenant_name, str(home / "churn.csv"))
    code = main(["train", "--tenant", tenant_name, "--model", "m", "--dataset", "churn.csv", "--target", "label",
                 "--algorithm", "sgd_classifier", "--param", "epochs=2"])
    out, err = capsys.readouterr()
    assert code == 0
    assert ("warning: no training supervisor has run on this database: start the platform with `tenantml up`; "
            "the request waits in the queue until one runs") in err
    [queued] = json.loads(tenantml("runs", "--json").stdout)
    assert (queued["request_id"], queued["status"]) == (out.strip(), "pending")


def test_errors_map_to_exit_codes(home: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["train", "--model", "m"]) == 2  # a usage error
    assert main(["train", "--model", "m", "--dataset", "d", "--target", "y", "--algorithm", "a",
                 "--param", "epochs"]) == 2  # InvalidRequest
    assert "error: name the tenant with --tenant T" in capsys.readouterr().err
    monkeypatch.setenv("TENANTML_API_KEY", "tml_unknown")
    assert main(["runs"]) == 2
    assert "TENANTML_API_KEY is not a known tenant key" in capsys.readouterr().err
    monkeypatch.setenv("TENANTML_TRAINNG__EPOCHS", "3")
    assert main(["runs"]) == 1  # InvalidSetting, a TenantmlError
    assert "unknown settings TENANTML_TRAINNG__EPOCHS" in capsys.readouterr().err


def test_status_without_a_platform_is_unhealthy_and_says_how_to_start_it(home: Path) -> None:
    as_json = tenantml("status", "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["healthy"] is False
    text = tenantml("status")
    assert text.exit_code == 1
    assert text.stdout.splitlines()[0].endswith("start it with `tenantml up`, or see its logs")
    assert text.stdout.splitlines()[1].split() == ["service", "state", "address"]


def test_a_reader_that_goes_away_ends_the_command_without_a_traceback(home: Path, store: Store) -> None:
    for i in range(300):  # more than stdout's buffer: the command is still writing when it finds the reader gone
        store.add_tenant(f"t-{i:04d}-" + "x" * 50, f"{i:064d}", NOW)
    for args in (["tenant", "list"], ["tenant", "list", "--json"], ["status"]):
        process = subprocess.Popen([sys.executable, "-m", "tenantml.cli", *args], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env={**os.environ})
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # `| head -0`
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=60) == 1, stderr
        assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_db_current_and_upgrade_report_the_schema_revision(home: Path) -> None:
    from tenantml.adapters.schema import head_revision

    before = tenantml("db", "current", "--json")
    assert before.exit_code == 1 and json.loads(before.stdout) == {"current": None, "head": head_revision()}
    upgraded = tenantml("db", "upgrade", "--json")
    assert upgraded.exit_code == 0 and json.loads(upgraded.stdout) == {"from": None, "to": head_revision()}
    again = tenantml("db", "upgrade")
    assert again.exit_code == 0 and f"revision {head_revision()}, the newest" in again.stdout
    assert tenantml("db", "current").exit_code == 0


def test_db_commands_are_refused_with_a_tenant_key(home: Path) -> None:
    api_key = created("acme")
    result = tenantml("db", "upgrade", api_key=api_key)
    assert result.exit_code != 0 and "operator" in str(result.exception)


def test_set_quota_sets_and_clears_a_tenant_s_queue_limit_and_names_bad_values(home: Path) -> None:
    created("acme")
    result = tenantml("tenant", "set-quota", "acme", "--max-queued", "3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"tenant": "acme", "max_queued": 3, "default_max_queued": None,
                                         "max_running": None, "default_max_running": None}
    cleared = tenantml("tenant", "set-quota", "acme", "--max-queued", "none")
    assert cleared.exit_code == 0 and "at most the default (no limit) requests waiting" in cleared.stdout
    assert main(["tenant", "set-quota", "acme", "--max-queued", "-1"]) == 2
    assert main(["tenant", "set-quota", "acme", "--max-queued", "lots"]) == 2
    assert main(["tenant", "set-quota", "nobody", "--max-queued", "1"]) == 2


def test_set_quota_sets_a_running_limit_beside_the_queued_one_and_keeps_the_other(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created("acme")
    monkeypatch.setenv("TENANTML_QUOTAS__MAX_RUNNING", "4")
    both = tenantml("tenant", "set-quota", "acme", "--max-queued", "10", "--max-running", "2", "--json")
    assert both.exit_code == 0, both.output
    assert json.loads(both.stdout) == {"tenant": "acme", "max_queued": 10, "default_max_queued": None,
                                       "max_running": 2, "default_max_running": 4}
    running_only = tenantml("tenant", "set-quota", "acme", "--max-running", "none")
    assert running_only.exit_code == 0, running_only.output
    assert running_only.stdout.strip() == (
        "tenant acme: at most 10 requests waiting, the default (4) trainings running"
    )
    created("globex")
    listed = json.loads(tenantml("tenant", "list", "--json").stdout)
    assert [(row["tenant"], row["max_queued"], row["max_running"], row["default_max_running"]) for row in listed] == [
        ("acme", 10, None, 4), ("globex", None, None, 4)
    ]
    table = tenantml("tenant", "list").stdout.splitlines()
    assert table[0].split() == ["tenant", "max", "queued", "max", "running"]
    assert table[1].split() == ["acme", "10", "the", "default", "(4)"]


def test_set_quota_names_the_option_and_value_it_refuses_and_writes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api_key = created("acme")
    refused = {
        ("--max-running", "-1"): "invalid --max-running -1: give a count of 0 or more, or 'none' for no limit",
        ("--max-running", "two"): "invalid --max-running 'two': give a count of 0 or more, or 'none'",
    }
    for (option, value), message in refused.items():
        assert main(["tenant", "set-quota", "acme", "--max-queued", "5", option, value]) == 2
        assert message in capsys.readouterr().err
    assert main(["tenant", "set-quota", "nobody", "--max-running", "1"]) == 2
    assert "unknown tenant 'nobody': create it first" in capsys.readouterr().err
    assert main(["tenant", "set-quota", "acme"]) == 2
    assert "give --max-queued N, --max-running N or both" in capsys.readouterr().err
    by_tenant = tenantml("tenant", "set-quota", "acme", "--max-running", "9", api_key=api_key)
    assert by_tenant.exit_code != 0 and "quotas are set by the operator" in str(by_tenant.exception)
    assert json.loads(tenantml("tenant", "list", "--json").stdout) == [{
        "tenant": "acme", "max_queued": None, "default_max_queued": None,
        "max_running": None, "default_max_running": None,
    }]


def test_usage_counts_each_tenant_s_trainings_and_a_tenant_key_sees_only_its_own(home: Path, store: Store) -> None:
    acme_key = created("acme")
    created("globex")
    for tenant in ("acme", "globex"):
        request_id = pending(store, tenant)
        worker = str(uuid.uuid4())
        now = datetime.now(UTC)
        epoch = store.start_attempt(request_id, 0, worker, WorkerClass.SMALL, now)
        lease = Lease(request_id, worker, epoch)
        store.mark_running(lease, now)
        store.heartbeat(lease, 40, 40, now)
        store.complete(lease, "1", {"accuracy": 0.9}, now)

    operator = tenantml("usage", "--json")
    assert operator.exit_code == 0, operator.output
    rows = {row["tenant"]: row for row in json.loads(operator.stdout)}
    assert set(rows) == {"acme", "globex"}
    assert (rows["acme"]["steps_trained"], rows["acme"]["attempts"], rows["acme"]["trainings"]) == (
        40, 1, {"completed": 1}
    )
    assert set(rows["acme"]["worker_seconds"]) == {"small"}
    own = tenantml("usage", "--json", api_key=acme_key)
    assert [row["tenant"] for row in json.loads(own.stdout)] == ["acme"]
    assert main(["usage", "--window", "yesterday"]) == 2
