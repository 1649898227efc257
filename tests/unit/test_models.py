"""Promotion, rollback and the model list, through the MLflow registry adapter on a local SQLite registry.

MLflow's own SQLite store stands in for the server here (no process to start); tests share it and
keep apart by tenant name. The last test points the adapter at a port nothing listens on.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tenantml.adapters.registry import Registry
from tenantml.errors import InvalidRequest, NotFound, ServiceUnavailable
from tenantml.services import models


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    folder = tmp_path_factory.mktemp("mlflow")
    (folder / "model").mkdir()
    (folder / "model" / "MLmodel").write_text("flavors: {}\n")  # registration digests the model's files
    return Registry(f"sqlite:///{folder / 'registry.db'}")


def registered(registry: Registry, tenant: str, model: str, accuracy: float) -> str:
    """A new version of the tenant's model, registered with an accuracy as a training would (without a run)."""
    no_run: str = None  # type: ignore[assignment]
    source = Path(registry.tracking_uri.removeprefix("sqlite:///")).parent / "model"
    return registry.register(tenant, model, str(source), no_run, {"metric.accuracy": str(accuracy)})


def test_promotion_moves_the_champion_and_remembers_the_previous_one(registry: Registry, tenant_name: str) -> None:
    first, second = registered(registry, tenant_name, "churn", 0.8), registered(registry, tenant_name, "churn", 0.9)
    assert models.promote(registry, tenant_name, "churn", first)["previous_champion"] is None
    assert models.promote(registry, tenant_name, "churn", second) == {
        "tenant": tenant_name, "model": "churn", "champion": second, "previous_champion": first,
    }
    assert models.promote(registry, tenant_name, "churn", second)["previous_champion"] == second  # already
    assert models.rollback(registry, tenant_name, "churn") == {
        "tenant": tenant_name, "model": "churn", "champion": first, "rolled_back_from": second,
    }
    with pytest.raises(InvalidRequest, match="no previous champion to roll back to"):
        models.rollback(registry, tenant_name, "churn")


def test_the_model_list_shows_champions_versions_and_the_champions_metrics(registry: Registry,
                                                                           tenant_name: str) -> None:
    churn = registered(registry, tenant_name, "churn", 0.75)
    registered(registry, tenant_name, "churn", 0.5)
    registered(registry, tenant_name, "fraud", 0.6)
    registered(registry, tenant_name + "x", "churn", 0.6)  # another tenant whose name starts the same
    models.promote(registry, tenant_name, "churn", churn)
    assert models.model_views(registry, tenant_name) == [
        {"model": "churn", "registered_name": f"{tenant_name}.churn", "champion": churn, "previous_champion": None,
         "versions": [churn, str(int(churn) + 1)], "champion_metrics": {"accuracy": 0.75}},
        {"model": "fraud", "registered_name": f"{tenant_name}.fraud", "champion": None, "previous_champion": None,
         "versions": ["1"], "champion_metrics": {}},
    ]


def test_promoting_a_version_that_does_not_exist_is_not_found(registry: Registry, tenant_name: str) -> None:
    registered(registry, tenant_name, "churn", 0.8)
    with pytest.raises(NotFound, match=f"model {tenant_name}.churn has no version 7"):
        models.promote(registry, tenant_name, "churn", "7")
    with pytest.raises(InvalidRequest, match="invalid version 'latest'"):
        models.promote(registry, tenant_name, "churn", "latest")
    with pytest.raises(NotFound, match=f"no model {tenant_name}.nothing: train it first"):
        models.rollback(registry, tenant_name, "nothing")
    assert registry.champion(tenant_name, "nothing") is None
    assert models.model_views(registry, "t-nobody") == []


def test_an_mlflow_server_that_does_not_answer_is_unavailable_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as probe:  # a free port, closed again: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    down = Registry(url)
    for call in (lambda: down.champion("acme", "churn"), lambda: down.list_models("acme"),
                 lambda: models.promote(down, "acme", "churn", "1")):
        with pytest.raises(ServiceUnavailable, match=f"MLflow at {url} failed") as caught:
            call()
        assert "TENANTML_MLFLOW__TRACKING_URI" in str(caught.value)


def test_a_version_is_registered_with_the_digest_of_its_files(registry: Registry, tenant_name: str) -> None:
    from tenantml.ml.model_files import digest_folder

    version = registered(registry, tenant_name, "churn", 0.8)
    tags = registry.client.get_model_version(f"{tenant_name}.churn", version).tags
    source = Path(registry.tracking_uri.removeprefix("sqlite:///")).parent / "model"
    assert tags["tenantml.model_digest"] == digest_folder(source)


def test_a_feature_schema_over_mlflows_limit_is_a_user_error_and_leaves_no_registered_model(
    registry: Registry, tenant_name: str
) -> None:
    from tenantml.errors import InvalidDataset

    source = Path(registry.tracking_uri.removeprefix("sqlite:///")).parent / "model"
    wide = [[f"feature_{i:05d}_{'x' * 20}", "float64"] for i in range(10_000)]
    no_run: str = None  # type: ignore[assignment]
    with pytest.raises(InvalidDataset, match="tenantml.features .* over MLflow's limit of 100000"):
        registry.register(tenant_name, "wide", str(source), no_run, {"features": wide})
    assert [m for m, _, _ in registry.list_models(tenant_name)] == []


def test_a_failed_registration_deletes_the_registered_model_it_created(registry: Registry, tenant_name: str) -> None:
    source = Path(registry.tracking_uri.removeprefix("sqlite:///")).parent / "model"
    no_run: str = None  # type: ignore[assignment]
    with pytest.raises(ServiceUnavailable):  # a tag key over MLflow's 250 characters: MLflow refuses the version
        registry.register(tenant_name, "half", str(source), no_run, {"k" * 300: "v"})
    assert [m for m, _, _ in registry.list_models(tenant_name)] == []
