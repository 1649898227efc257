"""The inference service for real: `bentoml serve` of serving/service.py on a free port, the session's
MLflow server, tenants in a temporary SQLite database. Two random tenants; no mocks; every process
stopped by pid; polling with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow.sklearn
import numpy as np
import pandas as pd
import psutil
import pytest

from tenantml.adapters.registry import Registry
from tests.support.inference import (
    FEATURES,
    PROJECT_DIR,
    InferenceServer,
    add_tenant,
    register_model,
    rows_for,
    start_inference_server,
    train_model,
)
from tests.support.waiting import wait_for as poll

pytestmark = pytest.mark.integration

CACHE_SIZE = 2
BODY_LIMIT = 20_000
REFRESH_S = 0.5
DEADLINE_S = 20.0


@dataclass
class Served:
    server: InferenceServer
    tracking_uri: str
    database_url: str
    home: Path
    a: str
    b: str
    keys: dict[str, str]
    frame: pd.DataFrame
    versions: dict[str, str]
    client: httpx.Client

    def predict(self, tenant: str | None, model: str, rows: Any, **extra: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"} if tenant else {}
        return self.client.post("/predict", json={"model": model, "rows": rows, **extra}, headers=headers)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTML_")}
        env.update(TENANTML_HOME=str(self.home), TENANTML_DATABASE__URL=self.database_url,
                   TENANTML_MLFLOW__TRACKING_URI=self.tracking_uri)
        return env

    def cli(self, *args: str, api_key: str | None = None) -> subprocess.CompletedProcess[str]:
        env = self.env() | ({"TENANTML_API_KEY": api_key} if api_key else {})
        return subprocess.run([sys.executable, "-m", "tenantml.cli", *args], env=env, capture_output=True,
                              text=True, timeout=120, cwd=PROJECT_DIR, check=False)


def wait_for(check: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> float:
    """Poll with a deadline (tests.support.waiting); returns how long it took."""
    started = time.monotonic()
    poll(check, deadline_s, what, every_s=0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def served(mlflow_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("inference")
    tenant_a, tenant_b = (f"t-{uuid.uuid4().hex[:10]}" for _ in range(2))
    database_url = f"sqlite:///{home / 'tenantml.db'}"
    keys = {tenant_a: add_tenant(database_url, tenant_a), tenant_b: add_tenant(database_url, tenant_b)}
    first, frame = train_model(seed=1)
    second, _ = train_model(seed=2)
    other, _ = train_model(seed=3)
    versions = {
        "a1": register_model(mlflow_server.url, tenant_a, "churn", first, frame)[0],
        "a2": register_model(mlflow_server.url, tenant_a, "churn", second, frame, promote=False)[0],
        "a-scoring": register_model(mlflow_server.url, tenant_a, "scoring", other, frame)[0],
        "b1": register_model(mlflow_server.url, tenant_b, "churn", other, frame)[0],
    }
    server = start_inference_server(
        home, mlflow_server.url, database_url,
        {"TENANTML_SERVING__MODEL_CACHE_SIZE": str(CACHE_SIZE), "TENANTML_SERVING__MAX_BODY_BYTES": str(BODY_LIMIT),
         "TENANTML_SERVING__CHAMPION_REFRESH_S": str(REFRESH_S)},
    )
    tree = [server.pid, *(p.pid for p in psutil.Process(server.pid).children(recursive=True))]
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield Served(server, mlflow_server.url, database_url, home, tenant_a, tenant_b, keys, frame, versions,
                         client)
    finally:
        server.stop()
        left = [pid for pid in tree if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert not left, f"processes left after stopping the service: {left}"


def matrix(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.asarray([[float(row[name]) for name, _ in FEATURES] for row in rows], dtype=np.float64)


def test_predictions_equal_the_registered_model_loaded_with_mlflow(served: Served) -> None:
    rows = rows_for(served.frame, 25)
    response = served.predict(served.a, "churn", rows)
    assert response.status_code == 200, response.text
    expected = mlflow.sklearn.load_model(f"models:/{served.a}.churn/{served.versions['a1']}").predict(matrix(rows))
    assert response.json() == {"predictions": expected.tolist(), "model_version": served.versions["a1"]}


def test_each_tenant_gets_its_own_model_under_the_same_name(served: Served) -> None:
    rows = rows_for(served.frame, 25)
    answer = served.predict(served.b, "churn", rows).json()
    expected = mlflow.sklearn.load_model(f"models:/{served.b}.churn/{served.versions['b1']}").predict(matrix(rows))
    assert answer["predictions"] == expected.tolist()


def test_another_tenants_model_is_404_like_an_unknown_one(served: Served) -> None:
    rows = rows_for(served.frame, 1)
    other = served.predict(served.b, "scoring", rows)  # A's model, B's key
    unknown = served.predict(served.b, "no-such-model", rows)
    assert other.status_code == unknown.status_code == 404
    assert other.json()["error"].replace("scoring", "M") == unknown.json()["error"].replace("no-such-model", "M")
    assert served.predict(served.a, "scoring", rows).status_code == 200  # it does exist, for A


@pytest.mark.parametrize("authorization", [None, "Bearer tml_not-a-key", "Basic abc", "Bearer"])
def test_a_missing_or_unknown_key_is_401(served: Served, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = served.client.post("/predict", json={"model": "churn", "rows": rows_for(served.frame, 1)},
                                  headers=headers)
    assert response.status_code == 401
    assert "API key" in response.json()["error"]


def _bad_requests(served: Served) -> list[tuple[str, dict[str, Any], int, str]]:
    good = rows_for(served.frame, 2)
    missing = [dict(good[0]), good[1]]
    del missing[0]["age"]
    extra = [good[0], {**good[1], "zip": 1234}]
    wrong = [good[0], {**good[1], "income": "lots"}]
    return [
        ("missing feature", {"model": "churn", "rows": missing}, 422, "rows[0].age"),
        ("extra feature", {"model": "churn", "rows": extra}, 422, "rows[1].zip"),
        ("wrong type", {"model": "churn", "rows": wrong}, 422, "rows[1].income"),
        ("null value", {"model": "churn", "rows": [{**good[0], "member": None}]}, 422, "rows[0].member"),
        ("empty list", {"model": "churn", "rows": []}, 422, "rows"),
        ("rows not a list", {"model": "churn", "rows": {"age": 1}}, 422, "rows"),
        ("row not an object", {"model": "churn", "rows": [good[0], [1, 2]]}, 422, "rows[1]"),
        ("no model", {"rows": good}, 422, "model"),
        ("tenant in the body", {"model": "churn", "rows": good, "tenant": served.b}, 422, "tenant"),
    ]


def test_bad_rows_are_422_naming_the_field_and_leave_other_requests_alone(served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.keys[served.a]}"}
    for what, body, status, field in _bad_requests(served):
        response = served.client.post("/predict", json=body, headers=headers)
        assert response.status_code == status, (what, response.text)
        assert response.json()["field"] == field, what
        assert field in response.json()["error"], what
        assert served.predict(served.a, "churn", rows_for(served.frame, 3)).status_code == 200, what


def test_a_body_over_the_limit_is_413(served: Served) -> None:
    rows = rows_for(served.frame, 400)
    assert len(json.dumps({"model": "churn", "rows": rows})) > BODY_LIMIT
    response = served.predict(served.a, "churn", rows)
    assert response.status_code == 413
    assert str(BODY_LIMIT) in response.json()["error"]
    assert served.predict(served.a, "churn", rows_for(served.frame, 3)).status_code == 200


@pytest.mark.parametrize("content", [b"{not json", b"model=churn&rows=1", b"\xff\xfe\x00"])
def test_a_body_that_is_not_json_is_400(served: Served, content: bytes) -> None:
    response = served.client.post("/predict", content=content, headers={
        "Authorization": f"Bearer {served.keys[served.a]}", "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_no_input_values_reach_the_logs(served: Served) -> None:
    sentinel = f"SECRET-{uuid.uuid4().hex}"
    good = rows_for(served.frame, 1)[0]
    for body in (
        {"model": "churn", "rows": [{**good, "income": sentinel}]},
        {"model": "churn", "rows": [{**good, sentinel: 1}]},
        {"model": "churn", "rows": [{**good, "age": sentinel}], "extra": sentinel},
        {"model": "no-such-model", "rows": [{**good, "score": sentinel}]},
    ):
        served.client.post("/predict", json=body, headers={"Authorization": f"Bearer {served.keys[served.a]}"})
    served.client.post("/predict", content=f"{{{sentinel}".encode(),
                       headers={"Authorization": f"Bearer {served.keys[served.a]}"})
    log = (served.home / "logs" / "inference.log").read_text(errors="replace")
    assert sentinel not in log
    assert "Traceback" not in log


def test_docs_liveness_and_readiness(served: Served) -> None:
    assert served.client.get("/livez").status_code == 200
    assert served.client.get("/readyz").status_code == 200
    spec = served.client.get("/docs.json").json()
    assert "/predict" in spec["paths"]
    assert served.client.get("/").status_code == 200


def test_promotion_is_served_without_restart_and_rollback_brings_back_the_previous(served: Served) -> None:
    pid, rows = served.server.pid, rows_for(served.frame, 5)

    def version() -> str:
        return str(served.predict(served.a, "churn", rows).json()["model_version"])

    assert version() == served.versions["a1"]
    promoted = served.cli("model", "promote", "--tenant", served.a, "--model", "churn",
                          "--version", served.versions["a2"], "--json")
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["previous_champion"] == served.versions["a1"]
    took = wait_for(lambda: version() == served.versions["a2"], "serving the promoted version")
    assert took < 5 * REFRESH_S + 5
    expected = mlflow.sklearn.load_model(f"models:/{served.a}.churn/{served.versions['a2']}").predict(matrix(rows))
    assert served.predict(served.a, "churn", rows).json()["predictions"] == expected.tolist()

    rolled = served.cli("model", "rollback", "--tenant", served.a, "--model", "churn", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout) == {"tenant": served.a, "model": "churn", "champion": served.versions["a1"],
                                         "rolled_back_from": served.versions["a2"]}
    wait_for(lambda: version() == served.versions["a1"], "serving the rolled-back version")
    assert served.server.pid == pid and served.server.service.alive()
    again = served.cli("model", "rollback", "--tenant", served.a, "--model", "churn")
    assert again.returncode == 2 and "no previous champion" in again.stderr


def test_model_list_shows_champions_and_is_tenant_scoped(served: Served) -> None:
    listed = served.cli("model", "list", "--tenant", served.a, "--json")
    assert listed.returncode == 0, listed.stderr
    models = {m["model"]: m for m in json.loads(listed.stdout)}
    assert {"churn", "scoring"} <= set(models)
    assert models["scoring"]["champion"] == served.versions["a-scoring"]
    as_b = served.cli("model", "list", "--json", api_key=served.keys[served.b])
    assert [m["model"] for m in json.loads(as_b.stdout)] == ["churn"]
    sneaky = served.cli("model", "promote", "--tenant", served.a, "--model", "churn", "--version", "1",
                        api_key=served.keys[served.b])
    assert sneaky.returncode != 0 and "not visible" in sneaky.stderr


def test_predict_command_prints_the_predictions_of_a_csv(served: Served, tmp_path: Path) -> None:
    frame = served.frame.head(30).assign(label="x")
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    result = served.cli("predict", "--model", "scoring", "--file", str(path), "--drop", "label",
                        "--url", served.server.url, "--json", api_key=served.keys[served.a])
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    expected = mlflow.sklearn.load_model(f"models:/{served.a}.scoring/{served.versions['a-scoring']}").predict(
        matrix(rows_for(served.frame, 30)))
    assert answer["predictions"] == expected.tolist()
    no_key = served.cli("predict", "--model", "scoring", "--file", str(path), "--url", served.server.url)
    assert no_key.returncode == 2 and "--api-key" in no_key.stderr
    unknown = served.cli("predict", "--model", "scoring", "--file", str(path), "--url", served.server.url,
                         "--drop", "label", api_key=served.keys[served.b])
    assert unknown.returncode == 1 and "not found" in unknown.stderr


def test_memory_stays_bounded_when_more_models_load_than_the_cache_holds(served: Served) -> None:
    ballast_mb, count = 24, 4 * CACHE_SIZE + 2  # far over the tens of MB the server's own RSS drifts by under load
    estimator, frame = train_model(seed=9, ballast_mb=ballast_mb)
    names = [f"big-{i}" for i in range(count)]
    for name in names:
        register_model(served.tracking_uri, served.a, name, estimator, frame)
    rows = rows_for(frame, 2)

    def rss_mb() -> float:
        root = psutil.Process(served.server.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20

    for name in names[:CACHE_SIZE + 1]:  # fill the cache (and the allocator's free lists) first
        assert served.predict(served.a, name, rows).status_code == 200
    baseline = rss_mb()
    for name in names[CACHE_SIZE + 1 :]:
        assert served.predict(served.a, name, rows).status_code == 200
    growth = rss_mb() - baseline
    unbounded = (count - CACHE_SIZE - 1) * ballast_mb
    assert growth < unbounded / 2, f"RSS grew {growth:.0f} MB over {count} models of {ballast_mb} MB"


def test_an_imported_champion_is_served_from_the_bentoml_store(served: Served) -> None:
    estimator, frame = train_model(seed=11)
    version, _ = register_model(served.tracking_uri, served.a, "imported", estimator, frame, promote=False)
    bentoml_home = served.home / "bentoml"
    env = {"TENANTML_HOME": str(served.home), "TENANTML_DATABASE__URL": served.database_url,
           "TENANTML_MLFLOW__TRACKING_URI": served.tracking_uri, "BENTOML_HOME": str(bentoml_home)}
    result = subprocess.run([sys.executable, str(PROJECT_DIR / "serving" / "import_model.py"), "--tenant", served.a,
                             "--model", "imported", "--version", version, "--json"],
                            env={**served.env(), **env}, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout)
    assert imported["labels"]["registry_name"] == f"{served.a}.imported"
    assert imported["labels"]["registry_version"] == version and imported["labels"]["run_id"]
    assert Path(imported["path"]).is_relative_to(bentoml_home)
    Registry(served.tracking_uri).set_champion(served.a, "imported", version)
    rows = rows_for(frame, 5)
    wait_for(lambda: served.predict(served.a, "imported", rows).status_code == 200, "serving the imported model")
    assert served.predict(served.a, "imported", rows).json()["predictions"] == estimator.predict(matrix(rows)).tolist()
    log = (served.home / "logs" / "inference.log").read_text()
    assert f"loaded {served.a}.imported version {version} from the BentoML model store" in log


def test_bentoml_build_packs_the_service_with_tenantml(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = str(Path(sys.executable).parent / "bentoml")
    result = subprocess.run([bentoml, "build", "-f", "serving/bentofile.yaml", "-o", "tag", "."], cwd=PROJECT_DIR,
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    source = next((tmp_path / "bentos" / "tenantml-inference").glob("*/src"))
    assert (source / "serving" / "service.py").is_file()
    assert (source / "tenantml" / "inference" / "predictor.py").is_file()
    assert not list(source.rglob("test_*.py"))


class _Payload:
    """Unpickling it creates ``proof``: what a pickle registered by an attacker would run."""

    def __init__(self, proof: Path) -> None:
        self.proof = proof

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.proof,))


def _register_pickle(tracking_uri: str, tenant: str, model: str, proof: Path, tags: dict[str, str]) -> str:
    """A cloudpickle "sklearn" model registered straight through MLflow, the way an attacker could."""
    import cloudpickle
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(tenant)
    run = client.create_run(experiment.experiment_id if experiment else client.create_experiment(tenant))
    folder = proof.parent / f"pickle-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(cloudpickle.dumps(_Payload(proof)))
    (folder / "MLmodel").write_text("flavors:\n  sklearn:\n    pickled_model: model.pkl\n"
                                    "    serialization_format: cloudpickle\n    sklearn_version: 1.9.1\n")
    client.log_artifacts(run.info.run_id, str(folder), "model")
    Registry(tracking_uri).client.create_registered_model(f"{tenant}.{model}")
    version = client.create_model_version(f"{tenant}.{model}", f"runs:/{run.info.run_id}/model", run.info.run_id,
                                          tags={"tenantml.features": json.dumps([list(f) for f in FEATURES]), **tags})
    client.set_registered_model_alias(f"{tenant}.{model}", "champion", version.version)
    return str(version.version)


@pytest.mark.parametrize("digest", [None, "sha256:" + "0" * 64], ids=["without-digest", "with-a-forged-digest"])
def test_a_pickle_registered_through_mlflow_is_refused_and_never_runs(
    served: Served, tmp_path: Path, digest: str | None
) -> None:
    proof = tmp_path / "proof.txt"
    model = f"victim-{uuid.uuid4().hex[:6]}"
    _register_pickle(served.tracking_uri, served.a, model, proof, {"tenantml.model_digest": digest} if digest else {})
    response = served.predict(served.a, model, rows_for(served.frame, 1))
    assert response.status_code == 503, response.text
    assert "is refused" in response.json()["error"] and "tenantml.model_digest" in response.json()["error"]
    assert not proof.exists(), "the pickle's payload ran"
    assert served.predict(served.a, "churn", rows_for(served.frame, 1)).status_code == 200


def test_a_model_file_replaced_in_the_artifact_store_after_registration_is_refused(
    served: Served, tmp_path: Path
) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.tracking import MlflowClient

    genuine, frame = train_model(seed=21)
    other, _ = train_model(seed=22)
    model = f"swapped-{uuid.uuid4().hex[:6]}"
    version, source = register_model(served.tracking_uri, served.a, model, genuine, frame)
    logged = MlflowClient(served.tracking_uri).get_logged_model(source.removeprefix("models:/"))
    swapped = tmp_path / "model.skops"
    import skops.io

    skops.io.dump(other, swapped)  # a valid skops model, just not the one registered
    get_artifact_repository(logged.artifact_location).log_artifact(str(swapped))  # PUT over the original
    response = served.predict(served.a, model, rows_for(frame, 1))
    assert response.status_code == 503, response.text
    assert "do not match" in response.json()["error"]
    assert f"model {model!r} version {version} is refused" in response.json()["error"]


def test_a_registered_version_is_loaded_with_its_digest_checked_once(served: Served) -> None:
    estimator, frame = train_model(seed=23)
    model = f"checked-{uuid.uuid4().hex[:6]}"
    register_model(served.tracking_uri, served.a, model, estimator, frame)
    rows = rows_for(frame, 3)
    for _ in range(3):
        response = served.predict(served.a, model, rows)
        assert response.status_code == 200, response.text
    assert response.json()["predictions"] == estimator.predict(matrix(rows)).tolist()
    log = (served.home / "logs" / "inference.log").read_text()
    assert log.count(f"loaded {served.a}.{model} version") == 1


def test_a_body_nested_a_thousand_deep_is_422_from_the_gate_not_bentomls_parser(served: Served) -> None:
    body = b'{"model": "churn", "rows": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    response = served.client.post("/predict", content=body, headers={"Authorization": f"Bearer {served.keys[served.a]}"})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "rows" and "nested more than" in response.json()["error"]
    assert "ERROR" not in (served.home / "logs" / "inference.log").read_text(errors="replace")
