"""Tenant-scoped MLflow and the tenant lifecycle, on the session's real platform (MLflow with auth).

Tenant B, logged into MLflow with its own credentials, probes tenant A's runs, metrics, artifacts
and checkpoints, registry, search endpoints and the UI's AJAX routes: every probe is refused (or,
for a search, finds nothing of A's), and A's objects are unchanged. Then disable, rotate and
delete, each end to end.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tenantml.adapters.mlflow_tenants import TenantAccess, mlflow_username
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.errors import TenantDisabled
from tenantml.local.credentials import read_credentials
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.services import lifecycle
from tests.support.platform import RunningPlatform, classification_frame
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PROBES_BY_SURFACE: dict[str, int] = {}


@pytest.fixture(scope="module")
def access(platform: RunningPlatform) -> Iterator[TenantAccess]:
    credentials = read_credentials(platform.settings.home)
    assert credentials is not None
    with TenantAccess(platform.mlflow_uri, (credentials.admin.username,
                                            credentials.admin.password.get_secret_value())) as admin:
        yield admin


@pytest.fixture(scope="module")
def trained(platform: RunningPlatform, access: TenantAccess) -> dict[str, Any]:
    """Tenant A with one completed training (a run, metrics, checkpoints, a registered model), and B."""
    a, b = platform.new_tenant(), platform.new_tenant()
    access.sync([a, b])
    dataset = platform.dataset(a, classification_frame(rows=2_000))
    request = platform.wait_done(platform.submit(a, dataset, model="m").request_id)
    assert request.status.value == "completed", request.reason
    access.sync([a, b])  # A's new registered model: READ for A
    return {"a": a, "b": b, "run_id": request.mlflow_run_id, "model": f"{a}.m",
            "experiment_id": access.experiment_id(a, create=False),
            "a_login": (mlflow_username(a), access.set_password(a)),
            "b_login": (mlflow_username(b), access.set_password(b))}


def _snapshot(uri: str, auth: tuple[str, str], t: dict[str, Any]) -> Any:
    run = httpx.get(f"{uri}/api/2.0/mlflow/runs/get", params={"run_id": t["run_id"]}, auth=auth)
    model = httpx.get(f"{uri}/api/2.0/mlflow/registered-models/get", params={"name": t["model"]}, auth=auth)
    assert run.status_code == 200 and model.status_code == 200, (run.text, model.text)
    info = run.json()["run"]
    return info["data"], info["info"]["lifecycle_stage"], model.json()["registered_model"].get("tags")


def test_tenant_b_is_refused_everything_of_tenant_a_in_mlflow(platform: RunningPlatform,
                                                              trained: dict[str, Any]) -> None:
    uri, t = platform.mlflow_uri, trained
    a_auth, b_auth = trained["a_login"], trained["b_login"]
    before = _snapshot(uri, a_auth, t)  # A reads its own: the control
    run, exp, model = t["run_id"], t["experiment_id"], t["model"]
    listing = httpx.get(f"{uri}/api/2.0/mlflow/artifacts/list", params={"run_id": run, "path": "checkpoints"},
                        auth=a_auth).json()
    checkpoint_dir = listing["files"][0]["path"]
    checkpoint = httpx.get(f"{uri}/api/2.0/mlflow/artifacts/list", params={"run_id": run, "path": checkpoint_dir},
                           auth=a_auth).json()["files"][0]["path"]
    refused: dict[str, list[tuple[str, str, Any]]] = {  # surface -> [(method, path, params or json)]
        "runs": [("GET", "/api/2.0/mlflow/runs/get", {"run_id": run}),
                 ("GET", "/api/2.0/mlflow/experiments/get", {"experiment_id": exp}),
                 ("GET", "/api/2.0/mlflow/experiments/get-by-name", {"experiment_name": f"tenantml-{t['a']}"}),
                 ("POST", "/api/2.0/mlflow/runs/set-tag", {"run_id": run, "key": "x", "value": "y"}),
                 ("POST", "/api/2.0/mlflow/runs/delete", {"run_id": run}),
                 ("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": exp})],
        "metrics": [("GET", "/api/2.0/mlflow/metrics/get-history", {"run_id": run, "metric_key": "accuracy"}),
                    ("POST", "/api/2.0/mlflow/runs/log-metric",
                     {"run_id": run, "key": "accuracy", "value": 0.0, "timestamp": 0})],
        "artifacts and checkpoints": [
            ("GET", "/api/2.0/mlflow/artifacts/list", {"run_id": run}),
            ("GET", "/api/2.0/mlflow/artifacts/list", {"run_id": run, "path": checkpoint_dir}),
            ("GET", "/get-artifact", {"run_id": run, "path": checkpoint}),
            ("GET", f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/{checkpoint}", None),
            ("GET", "/api/2.0/mlflow-artifacts/artifacts", {"path": f"{exp}/{run}/artifacts/checkpoints"}),
            ("DELETE", f"/api/2.0/mlflow-artifacts/artifacts/{exp}", None)],
        "registry": [("GET", "/api/2.0/mlflow/registered-models/get", {"name": model}),
                     ("GET", "/api/2.0/mlflow/model-versions/get", {"name": model, "version": "1"}),
                     ("GET", "/api/2.0/mlflow/registered-models/alias", {"name": model, "alias": "champion"}),
                     ("GET", "/model-versions/get-artifact", {"name": model, "version": "1", "path": "MLmodel"}),
                     ("POST", "/api/2.0/mlflow/registered-models/alias",
                      {"name": model, "alias": "champion", "version": "1"}),
                     ("POST", "/api/2.0/mlflow/model-versions/create", {"name": model, "source": "x"}),
                     ("DELETE", "/api/2.0/mlflow/registered-models/delete", {"name": model})],
        "UI AJAX routes": [("GET", "/ajax-api/2.0/mlflow/runs/get", {"run_id": run}),
                           ("GET", "/ajax-api/2.0/mlflow/experiments/get", {"experiment_id": exp}),
                           ("GET", "/ajax-api/2.0/mlflow/metrics/get-history-bulk",
                            {"run_id": run, "metric_key": "accuracy"}),
                           ("GET", "/ajax-api/2.0/mlflow/registered-models/get", {"name": model}),
                           ("POST", "/graphql", {"query": f'{{ mlflowGetRun(input: {{runId: "{run}"}}) '
                                                          "{ run { info { runName } } } }"})],
    }
    counts: dict[str, int] = {}
    for surface, probes in refused.items():
        for method, path, body in probes:
            kwargs: dict[str, Any] = {"params": body} if method == "GET" else {"json": body} if body else {}
            answer = httpx.request(method, uri + path, auth=b_auth, **kwargs)
            leaked = answer.status_code < 400 and not (path == "/graphql" and _graphql_refused(answer))
            assert not leaked, (surface, method, path, answer.status_code, answer.text[:300])
            counts[surface] = counts.get(surface, 0) + 1
    # searches B may make answer 200 but hold nothing of A's
    found = [
        httpx.post(f"{uri}/api/2.0/mlflow/runs/search", json={"experiment_ids": [exp]}, auth=b_auth),
        httpx.post(f"{uri}/ajax-api/2.0/mlflow/runs/search", json={"experiment_ids": [exp]}, auth=b_auth),
        httpx.post(f"{uri}/api/2.0/mlflow/experiments/search", json={"max_results": 1000}, auth=b_auth),
        httpx.get(f"{uri}/api/2.0/mlflow/registered-models/search", auth=b_auth),
        httpx.get(f"{uri}/api/2.0/mlflow/model-versions/search", params={"filter": f"name='{model}'"}, auth=b_auth),
        httpx.post(f"{uri}/api/2.0/mlflow/logged-models/search", json={"experiment_ids": [exp]}, auth=b_auth),
        httpx.get(f"{uri}/ajax-api/2.0/mlflow/registered-models/search", auth=b_auth),
    ]
    for answer in found:
        assert answer.status_code >= 400 or (t["a"] not in answer.text and run not in answer.text), answer.text[:300]
        counts["search"] = counts.get("search", 0) + 1
    PROBES_BY_SURFACE.update(counts)
    print(json.dumps({"mlflow_probes_refused": counts, "total": sum(counts.values())}))
    assert counts == {"runs": 6, "metrics": 2, "artifacts and checkpoints": 6, "registry": 7,
                      "UI AJAX routes": 5, "search": 7}
    assert _snapshot(uri, a_auth, t) == before  # A unchanged


def _graphql_refused(answer: httpx.Response) -> bool:
    body = answer.json()
    return bool(body.get("errors")) or not ((body.get("data") or {}).get("mlflowGetRun") or {}).get("run")


def test_a_name_claimed_under_another_tenant_loses_its_grant_at_the_next_sync(
    platform: RunningPlatform, access: TenantAccess, trained: dict[str, Any]
) -> None:
    """With workspaces off B may create `<a>.later` and would manage it; the sync revokes that."""
    uri, b_auth, a = platform.mlflow_uri, trained["b_login"], trained["a"]
    squat = httpx.post(f"{uri}/api/2.0/mlflow/registered-models/create", json={"name": f"{a}.later"}, auth=b_auth)
    assert squat.status_code == 200, squat.text
    report = access.sync([a, trained["b"]])
    assert any(f"{a}.later" in line and line.startswith(trained["b"]) for line in report.revoked), report
    assert any(f"{a}.later" in line and line.startswith(a) for line in report.granted), report
    assert access.sync([a, trained["b"]]).revoked == []  # idempotent
    # B's password is cached with its old grants for at most the auth cache TTL
    wait_for(lambda: httpx.get(f"{uri}/api/2.0/mlflow/registered-models/get", params={"name": f"{a}.later"},
                               auth=b_auth).status_code == 403, 90, "B's squatted grant to end")


def test_disable_refuses_keys_and_mlflow_and_stops_nothing_new(
    platform: RunningPlatform, started: tuple[EmbeddedPlatform, RunningPlatform], access: TenantAccess
) -> None:
    store, now = platform.connection.store, datetime.now(UTC)
    tenant, key = "t-off-" + uuid.uuid4().hex[:8], new_api_key()
    store.add_tenant(tenant, hash_api_key(key), now)
    access.sync([tenant])
    login = (mlflow_username(tenant), access.set_password(tenant))
    api = str(started[0].state.tenant_api_url)  # type: ignore[union-attr]
    assert httpx.get(f"{api}/v1/datasets", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert httpx.post(f"{platform.mlflow_uri}/api/2.0/mlflow/runs/search", json={"experiment_ids": [
        access.experiment_id(tenant, create=False)]}, auth=login).status_code == 200
    lifecycle.disable_tenant(store, tenant, now, access)
    with pytest.raises(TenantDisabled, match="disabled by the operator"):
        store.tenant_for_key(hash_api_key(key))
    assert store.running_limits()[tenant] == 0  # the scheduler starts none of its queued requests

    def refused() -> httpx.Response | None:
        answer = httpx.get(f"{api}/v1/datasets", headers={"Authorization": f"Bearer {key}"})
        return answer if answer.status_code == 401 else None

    answer = wait_for(refused, 45, "the tenant API to refuse a disabled tenant's key (30 s key cache)")
    assert "disabled" in answer.json()["message"], answer.text
    wait_for(lambda: httpx.get(f"{platform.mlflow_uri}/api/2.0/mlflow/experiments/search",
                               auth=login).status_code == 401, 90, "MLflow to refuse the disabled tenant's login")
    password = lifecycle.enable_tenant(store, tenant, access)
    assert password and store.tenant_for_key(hash_api_key(key)) == tenant
    assert store.running_limits()[tenant] is None


def test_rotate_gives_a_new_key_at_once_and_ends_the_old(platform: RunningPlatform) -> None:
    store, tenant = platform.connection.store, platform.new_tenant()
    old = lifecycle.rotate_key(store, tenant)
    new = lifecycle.rotate_key(store, tenant)
    assert store.tenant_for_key(hash_api_key(new)) == tenant
    assert store.tenant_for_key(hash_api_key(old)) is None


def test_delete_removes_everything_of_the_tenant_and_says_what(
    platform: RunningPlatform, access: TenantAccess
) -> None:
    tenant = platform.new_tenant()
    access.sync([tenant])
    dataset = platform.dataset(tenant, classification_frame(rows=2_000))
    request = platform.wait_done(platform.submit(tenant, dataset, model="m").request_id)
    assert request.status.value == "completed", request.reason
    experiment = access.experiment_id(tenant, create=False)
    artifacts = platform.settings.home / "mlflow" / "artifacts" / str(experiment)
    assert artifacts.is_dir()
    deleted = lifecycle.delete_tenant(platform.connection.store, platform.connection.storage, tenant,
                                      datetime.now(UTC), access)
    assert (deleted.requests, deleted.datasets) == (1, 1)
    assert deleted.mlflow == {"registered_models": 1, "runs": 1, "experiments": 1, "mlflow_users": 1}
    assert not platform.connection.store.tenant_exists(tenant)
    assert not platform.connection.storage.prefix(tenant).exists()
    assert not artifacts.exists()  # checkpoints and model files
    assert access.model_names(tenant) == [] and access.experiment_id(tenant, create=False) is None
    assert not access.user_exists(tenant)
