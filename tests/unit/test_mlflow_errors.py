"""MLflow's answers for a missing model, with and without basic-auth."""

from __future__ import annotations

from mlflow.exceptions import MlflowException

from tenantml.adapters.mlflow_errors import is_missing


def test_a_missing_model_is_recognised_whether_or_not_auth_is_on() -> None:
    assert is_missing(MlflowException("Registered Model with name=a.nope not found",
                                      error_code="RESOURCE_DOES_NOT_EXIST"))
    denied = MlflowException("API request to endpoint /api/2.0/mlflow/registered-models/alias failed with error "
                             "code 403 != 200. Response body: 'Permission denied'")
    assert is_missing(denied)  # basic-auth checks grants first: a model that does not exist has none
    assert not is_missing(MlflowException("API request failed with error code 500 != 200", error_code="INTERNAL_ERROR"))
