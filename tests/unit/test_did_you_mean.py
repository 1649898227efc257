"""A mistyped name is answered with the close one: algorithms, parameters, tenants, requests and models.

Only names the caller may see are offered: a tenant hears of its own requests and models only.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tenantml.adapters.registry import Registry
from tenantml.adapters.store import Store
from tenantml.domain.request import RequestStatus, TrainingRequest, TrainingSpec
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.errors import InvalidParameter, NotFound, UnknownAlgorithm, UnknownTenant, did_you_mean
from tenantml.ml.algorithms import validate_params
from tenantml.services import models, tenancy, trainings

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("typed", "known", "hint"),
    [
        ("sgd_clasifier", ["sgd_classifier", "sgd_regressor", "mlp_classifier"], " (did you mean 'sgd_classifier'?)"),
        ("learning_rat", ["learning_rate", "learning_rate_init", "alpha"], " (did you mean 'learning_rate'?)"),
        ("3f2a", ["3f2a9c00-aaaa", "77aa0000-bbbb"], " (did you mean '3f2a9c00-aaaa'?)"),  # a request id's start
        ("xgboost", ["sgd_classifier", "random_forest_classifier"], ""),
        ("acme", ["acme"], ""),
    ],
)
def test_did_you_mean_offers_the_one_close_name(typed: str, known: list[str], hint: str) -> None:
    assert did_you_mean(typed, known) == hint


def test_an_unknown_algorithm_names_the_close_one_and_all_choices() -> None:
    with pytest.raises(UnknownAlgorithm, match=r"'random_forest' \(did you mean 'random_forest_classifier'\?\): "
                                               r"choose one of .*sgd_classifier"):
        validate_params("random_forest", {})


def test_an_unknown_parameter_names_the_close_one() -> None:
    with pytest.raises(InvalidParameter, match=r"unknown parameter 'epoch' \(did you mean 'epochs'\?\); allowed"):
        validate_params("sgd_classifier", {"epoch": 3})
    with pytest.raises(InvalidParameter, match=r"'validation_split' \(did you mean 'validation_fraction'\?\)"):
        validate_params("mlp_classifier", {"validation_split": 0.1})


def test_an_unknown_tenant_names_the_close_one_to_an_operator(store: Store) -> None:
    for name in ("acme-corp", "globex"):
        store.add_tenant(name, hash_api_key(new_api_key()), T0)
    with pytest.raises(UnknownTenant, match=r"'acme-crop' \(did you mean 'acme-corp'\?\): create it first"):
        tenancy.existing(store, "acme-crop")
    with pytest.raises(UnknownTenant) as far:
        tenancy.existing(store, "initech")
    assert "did you mean" not in str(far.value)


def _submitted(store: Store, tenant: str) -> str:
    spec = TrainingSpec(tenant, "churn", f"/data/{tenant}/d.csv", "y", "sgd_classifier", {}, "f" * 64)
    request = TrainingRequest(str(uuid.uuid4()), spec, RequestStatus.PENDING, T0, T0)
    store.add_request(request)
    return request.id


def test_an_unknown_request_names_the_callers_close_request_only(store: Store, tenant_name: str) -> None:
    store.add_tenant(tenant_name, hash_api_key(new_api_key()), T0)
    store.add_tenant("t-other", hash_api_key(new_api_key()), T0)
    own, other = _submitted(store, tenant_name), _submitted(store, "t-other")
    with pytest.raises(NotFound, match=rf"did you mean '{own}'\?\): `tenantml runs`"):
        trainings.show_request(store, own[:8], tenant_name)  # the first characters, as people copy them
    typo = own[:-1] + ("0" if own[-1] != "0" else "1")
    with pytest.raises(NotFound, match=rf"did you mean '{own}'"):
        trainings.cancel_request(store, typo, tenant_name, T0)
    with pytest.raises(NotFound) as hidden:  # another tenant's request is not offered
        trainings.show_request(store, other[:8], tenant_name)
    assert other not in str(hidden.value)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    folder = tmp_path_factory.mktemp("mlflow")
    (folder / "model").mkdir()
    (folder / "model" / "MLmodel").write_text("flavors: {}\n")
    return Registry(f"sqlite:///{folder / 'registry.db'}")


def test_an_unknown_model_names_the_tenants_close_model(registry: Registry, tenant_name: str) -> None:
    source = Path(registry.tracking_uri.removeprefix("sqlite:///")).parent / "model"
    version = registry.register(tenant_name, "churn-weekly", str(source), None, {})  # type: ignore[arg-type]
    registry.register("t-else", "churn-weakly", str(source), None, {})  # type: ignore[arg-type]
    with pytest.raises(NotFound, match=rf"no model {tenant_name}.churn-weeky \(did you mean 'churn-weekly'\?\): "):
        models.promote(registry, tenant_name, "churn-weeky", version)
    with pytest.raises(NotFound, match="did you mean 'churn-weekly'"):
        models.rollback(registry, tenant_name, "churnweekly")
    with pytest.raises(NotFound, match="has no version 99"):  # the model exists: the version is what is wrong
        models.promote(registry, tenant_name, "churn-weekly", "99")
