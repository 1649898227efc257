"""A tenant's whole journey with only its key, against the session's `tenantml up`: the CLI in tenant
mode (TENANTML_API_KEY and TENANTML_API_URL, no database, Prefect or MLflow address) uploads,
trains and waits, lists, promotes, and predicts through the inference service."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import make_classification

from tests.support.platform import TENANTML, Up

pytestmark = pytest.mark.e2e


def tenantml(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TENANTML, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


def test_a_tenant_trains_and_predicts_with_only_its_key(platform_up: Up, tmp_path: Path) -> None:
    operator = platform_up.env
    status = json.loads(tenantml(operator, "status", "--json").stdout)
    assert status["tenant_api_url"].startswith("http://127.0.0.1:") and status["components"]["tenant_api"] is True
    key = json.loads(tenantml(operator, "tenant", "create", "e2e-solo", "--json").stdout)["api_key"]
    tenant = {k: v for k, v in operator.items() if not k.startswith(("TENANTML_", "PREFECT_", "MLFLOW_"))}
    tenant.update(TENANTML_API_KEY=key, TENANTML_API_URL=status["tenant_api_url"],
                  TENANTML_HOME=str(tmp_path / "nowhere"),  # no platform state to find anything in
                  TENANTML_DATABASE__URL="postgresql+psycopg://nobody@127.0.0.1:1/nowhere")
    x, y = make_classification(n_samples=2000, n_features=4, random_state=1)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(4)]).assign(label=y)
    frame.to_csv(tmp_path / "solo.csv", index=False)
    frame.head(5).to_csv(tmp_path / "rows.csv", index=False)

    assert tenantml(tenant, "dataset", "add", str(tmp_path / "solo.csv")).stdout == "solo.csv\n"
    trained = tenantml(tenant, "train", "--model", "solo", "--dataset", "solo.csv", "--target", "label",
                       "--algorithm", "sgd_classifier", "--param", "epochs=5", "--wait", "--json")
    assert trained.returncode == 0, trained.stderr
    result = json.loads(trained.stdout)
    assert (result["status"], result["model_version"]) == ("completed", "1")
    shown = json.loads(tenantml(tenant, "run", "show", result["request_id"], "--json").stdout)
    assert shown["attempts"] and shown["attempts"][0]["worker_uuid"]
    models = json.loads(tenantml(tenant, "model", "list", "--json").stdout)
    assert [(m["model"], m["champion"]) for m in models] == [("solo", "1")]
    predicted = tenantml(tenant, "predict", "--model", "solo", "--file", str(tmp_path / "rows.csv"), "--drop", "label",
                         "--url", status["inference_url"], "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert len(json.loads(predicted.stdout)["predictions"]) == 5
    refused = tenantml(tenant, "usage")
    assert refused.returncode == 2 and "this command is the operator's" in refused.stderr
