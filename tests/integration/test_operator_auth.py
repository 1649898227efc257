"""The operator surfaces are closed by default: Prefect and MLflow refuse anonymous callers, Prefect
refuses other origins and unprotected writes, and the inference identity only reads.

All against the session's embedded platform (tests/integration/conftest.py), started as `tenantml up`
starts it: the same credentials file, servers and identities.
"""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from tenantml.local.credentials import CREDENTIAL_VARIABLES, Credentials, credentials_file, read_credentials
from tenantml.local.state import state_file
from tenantml.local.status import platform_status
from tests.support.platform import RunningPlatform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def credentials(platform: RunningPlatform) -> Credentials:
    found = read_credentials(platform.settings.home)
    assert found is not None
    return found


def basic(auth_string: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


def test_an_anonymous_prefect_call_is_refused(platform: RunningPlatform) -> None:
    """Reads need the auth string; so does the CSRF token every write needs (a write without one is
    refused before the auth check, with 403)."""
    api = platform.prefect_api_url
    for headers in ({}, basic("guess")):
        assert httpx.get(f"{api}/admin/version", headers=headers).status_code == 401
        assert httpx.get(f"{api}/csrf-token", params={"client": "x"}, headers=headers).status_code == 401
        write = httpx.post(f"{api}/flow_runs/filter", json={"limit": 1}, headers=headers)
        assert write.status_code in (401, 403), write.text
    assert httpx.get(f"{api}/health").status_code == 200  # the health check stays open


def test_a_prefect_call_with_the_auth_string_and_a_csrf_token_is_accepted(
    platform: RunningPlatform, credentials: Credentials
) -> None:
    api, auth = platform.prefect_api_url, basic(credentials.prefect_auth_string.get_secret_value())
    without_token = httpx.post(f"{api}/flow_runs/filter", json={"limit": 1}, headers=auth)
    assert without_token.status_code == 403, without_token.text  # CSRF protection is on
    client = str(uuid.uuid4())
    token = httpx.get(f"{api}/csrf-token", params={"client": client}, headers=auth)
    assert token.status_code == 200, token.text
    accepted = httpx.post(f"{api}/flow_runs/filter", json={"limit": 1},
                          headers={**auth, "Prefect-Csrf-Token": token.json()["token"], "Prefect-Csrf-Client": client})
    assert accepted.status_code == 200, accepted.text


def test_a_cross_origin_preflight_from_another_origin_is_not_allowed(platform: RunningPlatform) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    evil = httpx.options(f"{platform.prefect_api_url}/flow_runs/filter",
                         headers={"Origin": "http://evil.example", **preflight})
    assert evil.headers.get("access-control-allow-origin") not in ("*", "http://evil.example"), evil.headers
    assert evil.status_code >= 400
    own_origin = platform.prefect_api_url.removesuffix("/api")
    own = httpx.options(f"{platform.prefect_api_url}/flow_runs/filter", headers={"Origin": own_origin, **preflight})
    assert own.headers.get("access-control-allow-origin") == own_origin, own.headers


def test_an_anonymous_mlflow_call_is_refused(platform: RunningPlatform) -> None:
    uri = platform.mlflow_uri
    write = httpx.post(f"{uri}/api/2.0/mlflow/experiments/create", json={"name": "anon-" + uuid.uuid4().hex})
    assert write.status_code == 401, write.text
    read = httpx.get(f"{uri}/api/2.0/mlflow/registered-models/search")
    assert read.status_code == 401, read.text
    graphql = httpx.post(f"{uri}/graphql", json={"query": "{ mlflowSearchModelVersions { modelVersions { name } } }"})
    assert graphql.status_code == 401, graphql.text
    artifact = httpx.put(f"{uri}/api/2.0/mlflow-artifacts/artifacts/0/anon.txt", content=b"x")
    assert artifact.status_code == 401, artifact.text


def test_the_inference_identity_reads_every_model_and_writes_nothing(
    platform: RunningPlatform, credentials: Credentials, tmp_path: Path
) -> None:
    """The platform registers a model after the reader exists; the reader sees it and its files at once
    (a wildcard READ), and every write it tries is refused."""
    uri, tenant = platform.mlflow_uri, platform.new_tenant()
    writer = httpx.Client(base_url=uri, auth=(credentials.platform.username,
                                              credentials.platform.password.get_secret_value()))
    reader = httpx.Client(base_url=uri, auth=(credentials.inference.username,
                                              credentials.inference.password.get_secret_value()))
    name = f"{tenant}.m"
    experiment = writer.post("/api/2.0/mlflow/experiments/create", json={"name": tenant}).json()["experiment_id"]
    run = writer.post("/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}).json()["run"]["info"]
    run_id, root = run["run_id"], run["artifact_uri"].removeprefix("mlflow-artifacts:/")
    assert writer.put(f"/api/2.0/mlflow-artifacts/artifacts/{root}/model.pkl", content=b"model").status_code == 200
    assert writer.post("/api/2.0/mlflow/registered-models/create", json={"name": name}).status_code == 200
    version = writer.post("/api/2.0/mlflow/model-versions/create", json={
        "name": name, "source": f"runs:/{run_id}/model.pkl", "run_id": run_id}).json()["model_version"]["version"]
    assert writer.post("/api/2.0/mlflow/registered-models/alias",
                       json={"name": name, "alias": "champion", "version": version}).status_code == 200

    alias = reader.get("/api/2.0/mlflow/registered-models/alias", params={"name": name, "alias": "champion"})
    assert alias.status_code == 200 and alias.json()["model_version"]["version"] == version, alias.text
    download = reader.get(f"/api/2.0/mlflow-artifacts/artifacts/{root}/model.pkl")
    assert download.status_code == 200 and download.content == b"model"

    writes = {
        "overwrite the model file": lambda: reader.put(f"/api/2.0/mlflow-artifacts/artifacts/{root}/model.pkl",
                                                       content=b"evil"),
        "move the alias": lambda: reader.post("/api/2.0/mlflow/registered-models/alias",
                                              json={"name": name, "alias": "champion", "version": version}),
        "add a version": lambda: reader.post("/api/2.0/mlflow/model-versions/create", json={
            "name": name, "source": f"runs:/{run_id}/model.pkl", "run_id": run_id}),
        "log to the run": lambda: reader.post("/api/2.0/mlflow/runs/log-metric", json={
            "run_id": run_id, "key": "m", "value": 1.0, "timestamp": 0}),
        "delete the model": lambda: reader.request("DELETE", "/api/2.0/mlflow/registered-models/delete",
                                                   json={"name": name}),
        "create a user": lambda: reader.post("/api/2.0/mlflow/users/create",
                                             json={"username": "x" + uuid.uuid4().hex, "password": "p" * 16}),
    }
    answers = {what: write().status_code for what, write in writes.items()}
    assert all(code == 403 for code in answers.values()), answers
    assert writer.get(f"/api/2.0/mlflow-artifacts/artifacts/{root}/model.pkl").content == b"model"


def test_the_credentials_file_is_private_and_no_secret_leaks(
    platform: RunningPlatform, credentials: Credentials
) -> None:
    home = platform.settings.home
    path = credentials_file(home)
    assert path.stat().st_mode & 0o777 == 0o600
    names = {line.partition("=")[0] for line in path.read_text().splitlines() if line and not line.startswith("#")}
    assert names == set(CREDENTIAL_VARIABLES)
    status = platform_status(platform.settings)
    assert status["credentials_file"] == str(path)
    values = [v for line in path.read_text().splitlines() if not line.startswith("#")
              for v in [line.partition("=")[2]] if len(v) >= 20]
    assert len(values) >= 4
    exposed = {"status": repr(status), "state": state_file(home).read_text()}
    for log in (home / "logs").glob("*"):
        if log.is_file():
            exposed[log.name] = log.read_text(errors="replace")
    for proc in psutil.process_iter(["cmdline"]):
        exposed[f"argv of {proc.pid}"] = " ".join(proc.info["cmdline"] or [])
    leaks = [(where, value[:4] + "...") for where, text in exposed.items() for value in values
             if re.search(re.escape(value), text)]
    assert not leaks, leaks
