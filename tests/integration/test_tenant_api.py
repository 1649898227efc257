"""The tenant API served for real (uvicorn on a free port, stopped by pid): docs, health, tenant B's
probes against tenant A's objects on every route, the data boundaries, and the CLI in tenant mode.

The API runs on its own SQLite metadata and a SQLite MLflow registry (no MLflow server: these tests
train nothing; tests/integration/test_tenant_journey.py trains on the whole platform).
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenantml.cli import main
from tests.support.tenant_api import LiveTenantApi, client_for, live_tenant_api

MAX_DATASET_BYTES = 200_000
CSV = b"x0,x1,label\n0.1,1.0,0\n0.2,0.5,1\n0.3,0.1,0\n0.4,0.9,1\n"


@dataclass
class World:
    """Tenant A with a dataset, a waiting training and a model of two versions; tenant B with a dataset."""

    api: LiveTenantApi
    a: str
    a_key: str
    b: str
    b_key: str
    a_request: str

    def client(self, key: str | None) -> httpx.Client:
        return client_for(self.api.url, key)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = {"TENANTML_LIMITS__MAX_DATASET_BYTES": str(MAX_DATASET_BYTES),
                "TENANTML_TENANT_API__FOLLOW_INTERVAL_S": "0.1"}
    with live_tenant_api(tmp_path_factory.mktemp("tenant-api"), settings) as api:
        a, a_key = api.new_tenant()
        b, b_key = api.new_tenant()
        with client_for(api.url, a_key) as client:
            assert client.put("/v1/datasets/data.csv", content=CSV).status_code == 201
            submitted = client.post("/v1/trainings", json={
                "model": "churn", "dataset": "data.csv", "target": "label", "algorithm": "sgd_classifier",
                "idempotency_key": "a-key-1"})
            assert submitted.status_code == 202, submitted.text
        with client_for(api.url, b_key) as client:
            assert client.put("/v1/datasets/data.csv", content=CSV).status_code == 201
        for accuracy in (0.8, 0.9):
            api.register(a, "churn", accuracy)
        api.registry.set_champion(a, "churn", "1")
        yield World(api, a, a_key, b, b_key, submitted.json()["request_id"])


def snapshot(world: World) -> dict[str, Any]:
    """Everything A can see of its own objects, through the API with A's key."""
    with world.client(world.a_key) as client:
        training = client.get(f"/v1/trainings/{world.a_request}").json()
        return {
            "datasets": client.get("/v1/datasets").json(),
            "training": {k: training[k] for k in ("status", "epoch", "reason", "step", "attempts")},
            "trainings": [t["request_id"] for t in client.get("/v1/trainings").json()["trainings"]],
            "models": client.get("/v1/models").json(),
            "versions": client.get("/v1/models/churn/versions").json(),
            "file": (world.api.storage.prefix(world.a) / "data.csv").read_bytes(),
        }


# -- documentation and health ---------------------------------------------------------------------
def test_the_openapi_document_declares_the_bearer_scheme_and_the_error_statuses(world: World) -> None:
    document = httpx.get(f"{world.api.url}/openapi.json").json()
    assert document["components"]["securitySchemes"]["TenantKey"] == {
        "type": "http", "scheme": "bearer",
        "description": "The tenant's API key, as `tenantml tenant create` printed it: the tenant is the key's."}
    submit = document["paths"]["/v1/trainings"]["post"]
    assert {"401", "404", "409", "413", "422"} <= set(submit["responses"])
    assert submit["security"] == [{"TenantKey": []}]
    assert httpx.get(f"{world.api.url}/docs").status_code == 200


def test_liveness_and_readiness_answer_without_a_key(world: World) -> None:
    assert httpx.get(f"{world.api.url}/livez").json() == {"status": "ok"}
    assert httpx.get(f"{world.api.url}/readyz").json() == {"status": "ok"}


# -- isolation: tenant B against tenant A's objects -----------------------------------------------
def _routes(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    """Every /v1 route, with A's objects where a route takes one."""
    order = {"model": "churn", "dataset": "data.csv", "target": "label", "algorithm": "sgd_classifier"}
    return [
        ("GET", "/v1/tenant", {}), ("GET", "/v1/datasets", {}), ("PUT", "/v1/datasets/data.csv", {"content": CSV}),
        ("DELETE", "/v1/datasets/data.csv", {}), ("POST", "/v1/trainings", {"json": order}),
        ("GET", "/v1/trainings", {}), ("GET", f"/v1/trainings/{world.a_request}", {}),
        ("POST", f"/v1/trainings/{world.a_request}/cancel", {}), ("GET", f"/v1/trainings/{world.a_request}/events", {}),
        ("GET", "/v1/models", {}), ("GET", "/v1/models/churn/versions", {}),
        ("POST", "/v1/models/churn/promote", {"json": {"version": "2"}}), ("POST", "/v1/models/churn/rollback", {}),
    ]


def test_without_a_key_or_with_an_unknown_one_every_route_is_401_and_a_is_unchanged(world: World) -> None:
    before = snapshot(world)
    refused = 0
    for key in (None, "tm_" + uuid.uuid4().hex, world.a_key + "x"):
        with world.client(key) as client:
            for method, path, extra in _routes(world):
                answer = client.request(method, path, **extra)
                assert answer.status_code == 401, (key, method, path, answer.text)
                assert answer.json()["code"] == "unauthorized" and answer.headers["www-authenticate"] == "Bearer"
                refused += 1
    assert refused == 3 * 13
    assert snapshot(world) == before


def _probes(world: World) -> list[tuple[str, str, dict[str, Any], set[int]]]:
    """B's key on every route that names one of A's objects, or that could show one; the statuses refused."""
    a_file = world.api.storage.prefix(world.a) / "data.csv"
    order = {"model": "churn", "target": "label", "algorithm": "sgd_classifier", "force": True}
    request = world.a_request
    return [
        ("GET", f"/v1/trainings/{request}", {}, {404}),
        ("POST", f"/v1/trainings/{request}/cancel", {}, {404}),
        ("GET", f"/v1/trainings/{request}/events", {}, {404}),
        ("GET", f"/v1/trainings/{request}", {"headers": {"X-Tenant": world.a}}, {404}),
        ("GET", f"/v1/trainings/{request}", {"params": {"tenant": world.a}}, {404}),
        ("GET", "/v1/models/churn/versions", {}, {404}),
        ("POST", "/v1/models/churn/promote", {"json": {"version": "2"}}, {404}),
        ("POST", "/v1/models/churn/rollback", {}, {404}),
        ("POST", f"/v1/models/{world.a}.churn/promote", {"json": {"version": "2"}}, {422}),
        ("GET", f"/v1/models/{world.a}.churn/versions", {}, {422}),
        ("DELETE", f"/v1/datasets/..%2F{world.a}%2Fdata.csv", {}, {422}),
        ("DELETE", f"/v1/datasets/{str(a_file).replace('/', '%2F')}", {}, {422}),
        ("PUT", f"/v1/datasets/..%2F{world.a}%2Fdata.csv", {"content": b"x,label\n1,0\n"}, {422}),
        ("PUT", "/v1/datasets/%2E%2E", {"content": b"x,label\n1,0\n"}, {422}),
        ("POST", "/v1/trainings", {"json": {**order, "dataset": f"../{world.a}/data.csv"}}, {422}),
        ("POST", "/v1/trainings", {"json": {**order, "dataset": str(a_file)}}, {422}),
        ("POST", "/v1/trainings", {"json": {**order, "dataset": f"file://{a_file}"}}, {422}),
        ("POST", "/v1/trainings", {"json": {**order, "dataset": "data.csv", "tenant": world.a}}, {422}),
    ]


def test_tenant_b_probes_a_on_every_route_every_probe_is_refused_and_a_is_unchanged(world: World) -> None:
    before = snapshot(world)
    refused = 0
    with world.client(world.b_key) as client:
        unknown = client.get(f"/v1/trainings/{uuid.uuid4()}").json()
        for method, path, extra, statuses in _probes(world):
            answer = client.request(method, path, **extra)
            assert answer.status_code in statuses, (method, path, answer.status_code, answer.text)
            assert str(world.api.home) not in answer.text  # no server path, and nothing of A's but what B sent
            refused += 1
        # another tenant's request answers exactly as one that does not exist
        theirs = client.get(f"/v1/trainings/{world.a_request}").json()
        assert theirs == {**unknown, "message": unknown["message"].replace(
            unknown["message"].split("'")[1], world.a_request)}
        # the lists show nothing of A's; the same idempotency key is B's own; A's names are not B's
        listed = {
            "trainings": client.get("/v1/trainings", params={"tenant": world.a}).json()["trainings"],
            "models": client.get("/v1/models").json()["models"],
            "datasets": [d["name"] for d in client.get("/v1/datasets").json()["datasets"]],
        }
        assert listed == {"trainings": [], "models": [], "datasets": ["data.csv"]}
        refused += 3
        mine = client.post("/v1/trainings", json={"model": "other", "dataset": "data.csv", "target": "label",
                                                  "algorithm": "sgd_classifier", "idempotency_key": "a-key-1"})
        assert mine.status_code == 202 and mine.json()["request_id"] != world.a_request
        refused += 1
    assert refused == len(_probes(world)) + 4 == 22
    assert snapshot(world) == before


# -- data boundaries: what an operator (or an attacker with a shell) left in B's storage -------------
def _planted(world: World) -> dict[str, str]:
    """Files in B's storage that must never be read as B's dataset; returns name -> what it is."""
    prefix, a_prefix = world.api.storage.prefix(world.b), world.api.storage.prefix(world.a)
    planted = {
        "to-a.csv": lambda p: p.symlink_to(a_prefix / "data.csv"),
        "to-passwd.csv": lambda p: p.symlink_to("/etc/passwd"),
        "to-zero.csv": lambda p: p.symlink_to("/dev/zero"),
        "fifo.csv": lambda p: os.mkfifo(p),
        "hard.csv": lambda p: os.link(a_prefix / "data.csv", p),
    }
    if not (prefix / "a-folder").exists():
        (prefix / "a-folder").symlink_to(a_prefix, target_is_directory=True)
    for name, make in planted.items():
        if not (prefix / name).exists() and not (prefix / name).is_symlink():
            make(prefix / name)
    if os.geteuid() == 0 and not (prefix / "null.csv").exists():
        os.mknod(prefix / "null.csv", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    return {**dict.fromkeys(planted, ""), "a-folder/data.csv": "", **({"null.csv": ""} if os.geteuid() == 0 else {})}


@pytest.mark.parametrize("dataset", ["to-a.csv", "to-passwd.csv", "to-zero.csv", "fifo.csv", "hard.csv",
                                     "a-folder/data.csv", "null.csv"])
def test_links_fifos_devices_and_hard_links_in_the_storage_are_refused_as_datasets(world: World, dataset: str) -> None:
    if dataset not in _planted(world):
        pytest.skip("a device file needs root to make")
    before = snapshot(world)
    with world.client(world.b_key) as client:
        answer = client.post("/v1/trainings", json={"model": "m", "dataset": dataset, "target": "label",
                                                    "algorithm": "sgd_classifier"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] in ("dataset_outside_tenant", "invalid_request")
        assert dataset not in [d["name"] for d in client.get("/v1/datasets").json()["datasets"]]
    assert snapshot(world) == before


@pytest.mark.parametrize("name", ["..", ".hidden.csv", "a%00.csv", "a%0A.csv", "a%09b.csv", "a b.csv",
                                  "x" * 129 + ".csv", "-x.csv", "%2Fetc%2Fpasswd"])
def test_an_upload_name_that_is_not_a_plain_file_name_is_refused_and_nothing_is_written(world: World,
                                                                                         name: str) -> None:
    with world.client(world.b_key) as client:
        answer = client.put(f"/v1/datasets/{name}", content=CSV)
    assert answer.status_code in (404, 422), answer.text
    assert sorted(p.name for p in world.api.storage.prefix(world.b).iterdir() if p.name.startswith(".upload-")) == []


def test_an_upload_over_the_limit_is_413_whether_declared_or_streamed_and_leaves_no_partial_file(world: World) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"x0,label\n"
        for _ in range(MAX_DATASET_BYTES // 10_000 + 2):
            yield b"1,0\n" * 2_500

    with world.client(world.b_key) as client:
        declared = client.put("/v1/datasets/big.csv", content=b"x" * (MAX_DATASET_BYTES + 1))
        streamed = client.put("/v1/datasets/big.csv", content=chunks())  # chunked: no Content-Length
        names = [d["name"] for d in client.get("/v1/datasets").json()["datasets"]]
    assert (declared.status_code, declared.json()["code"]) == (413, "payload_too_large")
    assert (streamed.status_code, streamed.json()["code"]) == (413, "payload_too_large")
    assert "big.csv" not in names
    assert not [p for p in world.api.storage.prefix(world.b).iterdir() if p.name.startswith(".upload-")]


def test_an_upload_replaces_a_dataset_whole_and_the_platform_names_the_file(world: World) -> None:
    with world.client(world.b_key) as client:
        first = client.put("/v1/datasets/replace.csv", content=CSV).json()
        second = client.put("/v1/datasets/replace.csv", content=CSV + b"0.5,0.5,1\n").json()
        deleted = client.delete("/v1/datasets/replace.csv")
        gone = client.delete("/v1/datasets/replace.csv")
    assert first["columns"] == ["x0", "x1", "label"] and second["size"] == len(CSV) + 10
    assert deleted.status_code == 204 and (gone.status_code, gone.json()["code"]) == (404, "dataset_not_found")


# -- the CLI in tenant mode: the tenant API only ------------------------------------------------------
@pytest.fixture
def tenant_mode(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """B's key and the API's URL; a database and an MLflow address that lead nowhere, to show they are unused."""
    for name in [n for n in os.environ if n.startswith("TENANTML_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TENANTML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TENANTML_API_KEY", world.b_key)
    monkeypatch.setenv("TENANTML_API_URL", world.api.url)
    monkeypatch.setenv("TENANTML_DATABASE__URL", "postgresql+psycopg://nobody@127.0.0.1:1/nowhere")
    monkeypatch.setenv("TENANTML_MLFLOW__TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv("TENANTML_PREFECT__API_URL", "http://127.0.0.1:1/api")
    return world


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_in_tenant_mode_uploads_trains_lists_shows_and_cancels_through_the_api(
        tenant_mode: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = tenant_mode
    file = tmp_path / "cli.csv"
    file.write_bytes(CSV)
    assert run(capsys, "dataset", "add", str(file))[:2] == (0, "cli.csv\n")
    code, out, _ = run(capsys, "dataset", "list")
    assert code == 0 and "cli.csv" in out
    code, out, err = run(capsys, "train", "--model", "cli", "--dataset", "cli.csv", "--target", "label",
                         "--algorithm", "sgd_classifier", "--param", "epochs=3")
    assert code == 0, err
    request_id = out.strip()
    code, out, _ = run(capsys, "runs")
    assert code == 0 and request_id in out and world.a_request not in out
    code, out, _ = run(capsys, "run", "show", request_id)
    assert code == 0 and f"request_id: {request_id}" in out and "status: pending" in out
    assert run(capsys, "run", "cancel", request_id)[:2] == (0, f"request {request_id}: cancelled\n")
    code, _, err = run(capsys, "run", "cancel", request_id)
    assert (code, err) == (2, f"error: request {request_id} has already ended (cancelled)\n")
    code, out, _ = run(capsys, "model", "list", "--json")
    assert code == 0 and out.strip() == "[]"


def test_the_cli_in_tenant_mode_never_reaches_another_tenant(tenant_mode: World,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    world = tenant_mode
    code, _, err = run(capsys, "run", "show", world.a_request)
    assert code == 1 and err.startswith(f"error: no training request {world.a_request!r}")
    code, _, err = run(capsys, "runs", "--tenant", world.a)
    assert (code, err) == (1, f"error: tenant {world.a!r} is not visible with this API key\n")
    code, _, err = run(capsys, "model", "promote", "--model", "churn", "--version", "1")
    assert code == 1 and ("has no version 1" in err or "no model" in err)
    code, _, err = run(capsys, "tenant", "list")
    assert code == 2 and "this command is the operator's" in err
    assert world.api.registry.champion(world.a, "churn") == "1"
