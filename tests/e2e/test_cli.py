"""The `tenantml` command against the session's `tenantml up` in a temporary home (tests/e2e/conftest.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import make_classification

from tests.support.platform import TENANTML, Up

pytestmark = pytest.mark.e2e


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([TENANTML, *args], env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"tenantml {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


@pytest.fixture
def up(platform_up: Up) -> dict[str, str]:
    """The environment that reaches the session's `tenantml up`."""
    return platform_up.env


def test_status_reports_health_and_urls(up: dict[str, str]) -> None:
    status = json.loads(run(up, "status", "--json").stdout)
    assert status["healthy"] is True
    assert status["prefect_api_url"].startswith("http://127.0.0.1:")
    assert status["mlflow_tracking_uri"].startswith("http://127.0.0.1:")
    assert "inference_url" in status


def test_status_names_the_credentials_file_and_how_to_log_in(up: dict[str, str], platform_up: Up) -> None:
    """The operator's CLI found the credentials itself (nothing sourced); status shows the file, never a value."""
    path = platform_up.home.resolve() / "credentials.env"
    status = json.loads(run(up, "status", "--json").stdout)
    assert status["credentials_file"] == str(path)
    assert path.stat().st_mode & 0o777 == 0o600
    human = run(up, "status").stdout
    assert str(path) in human and "PREFECT_API_AUTH_STRING" in human and "MLFLOW_TRACKING_USERNAME" in human
    secrets = [line.partition("=")[2] for line in path.read_text().splitlines() if "PASSWORD=" in line or "STRING=" in line]
    assert secrets and not any(secret in human + json.dumps(status) for secret in secrets)
    assert not any(secret in platform_up.log.read_text() for secret in secrets)


def test_train_runs_and_run_show_through_the_command(up: dict[str, str], tmp_path: Path) -> None:
    created = json.loads(run(up, "tenant", "create", "e2e-acme", "--json").stdout)
    assert created["tenant"] == "e2e-acme" and created["api_key"].startswith("tml_")
    x, y = make_classification(n_samples=2000, n_features=5, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)]).assign(label=y)
    frame.to_csv(tmp_path / "churn.csv", index=False)
    run(up, "dataset", "add", "--tenant", "e2e-acme", str(tmp_path / "churn.csv"))

    trained = json.loads(run(up, "train", "--tenant", "e2e-acme", "--model", "churn", "--dataset", "churn.csv",
                             "--target", "label", "--algorithm", "sgd_classifier", "--param", "epochs=3",
                             "--wait", "--json").stdout)
    assert trained["status"] == "completed" and trained["model_version"] == "1"

    listed = json.loads(run(up, "runs", "--tenant", "e2e-acme", "--json").stdout)
    assert [r["request_id"] for r in listed] == [trained["request_id"]]
    shown = json.loads(run(up, "run", "show", trained["request_id"], "--json").stdout)
    assert shown["status"] == "completed"
    assert shown["attempts"][0]["worker_uuid"] and shown["attempts"][0]["worker_class"] == "small"

    again = json.loads(run(up, "train", "--tenant", "e2e-acme", "--model", "churn", "--dataset", "churn.csv",
                           "--target", "label", "--algorithm", "sgd_classifier", "--param", "epochs=3",
                           "--json").stdout)
    assert again["decision"] == "up_to_date"

    as_tenant = {**up, "TENANTML_API_KEY": created["api_key"]}
    visible = json.loads(run(as_tenant, "runs", "--json").stdout)
    assert {r["request_id"] for r in visible} == {trained["request_id"], again["request_id"]}
    assert {r["tenant"] for r in visible} == {"e2e-acme"}
    other = run(as_tenant, "runs", "--tenant", "e2e-bad", "--json", check=False)
    assert other.returncode != 0 and "not visible" in other.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--tenant", "nobody", "--algorithm", "sgd_classifier", "--dataset", "churn.csv", "--target", "label"], "nobody"),
        (["--tenant", "e2e-bad", "--algorithm", "magic_forest", "--dataset", "churn.csv", "--target", "label"], "magic_forest"),
        (["--tenant", "e2e-bad", "--algorithm", "sgd_classifier", "--dataset", "missing.csv", "--target", "label"], "missing.csv"),
        (["--tenant", "e2e-bad", "--algorithm", "sgd_classifier", "--dataset", "churn.csv", "--target", "colour"], "colour"),
    ],
)
def test_bad_training_requests_exit_nonzero_naming_the_value_and_submit_nothing(
    up: dict[str, str], tmp_path: Path, args: list[str], named: str
) -> None:
    if run(up, "tenant", "list", "--json").stdout.count("e2e-bad") == 0:
        run(up, "tenant", "create", "e2e-bad")
        (tmp_path / "churn.csv").write_text("f0,label\n1.0,0\n2.0,1\n")
        run(up, "dataset", "add", "--tenant", "e2e-bad", str(tmp_path / "churn.csv"))
    result = run(up, "train", "--model", "m", *args, check=False)
    assert result.returncode == 2
    assert named in result.stderr
    assert json.loads(run(up, "runs", "--tenant", "e2e-bad", "--json").stdout) == []
