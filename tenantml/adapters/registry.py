"""MLflow model registry: one registered model per tenant and model, alias ``champion`` in service."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException, RestException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from tenantml.domain.names import registered_model_name
from tenantml.errors import InvalidRequest, NotFound

__all__ = ["CHAMPION", "HISTORY_TAG", "PIP_REQUIREMENTS", "PREVIOUS_CHAMPION", "Registry"]

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
HISTORY_TAG = "tenantml.champion_history"
HISTORY_LENGTH = 50


def _pinned(*names: str) -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in names]


# Explicit requirements: letting MLflow infer them costs seconds per model.
PIP_REQUIREMENTS = _pinned("scikit-learn", "numpy", "pandas", "cloudpickle")


def _is_missing(err: MlflowException) -> bool:
    return getattr(err, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"} or "not found" in str(err).lower()


class Registry:
    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def log_model(self, run_id: str, estimator: Any, sample: Any, epoch: int) -> str:
        """Log the estimator (native sklearn flavour) under the run; returns the model URI."""
        mlflow.set_tracking_uri(self.tracking_uri)
        signature = infer_signature(sample, estimator.predict(sample.to_numpy()))  # fitted on arrays
        with mlflow.start_run(run_id=run_id):
            info = mlflow.sklearn.log_model(
                estimator,
                name=f"model-epoch-{epoch}",
                signature=signature,
                pip_requirements=PIP_REQUIREMENTS,
                serialization_format="cloudpickle",
            )
        return str(info.model_uri)

    def register(
        self, tenant: str, model: str, model_uri: str, run_id: str, tags: Mapping[str, object]
    ) -> str:
        name = registered_model_name(tenant, model)
        try:
            self.client.create_registered_model(name, tags={"tenantml.tenant": tenant, "tenantml.model": model})
        except MlflowException as err:
            if "already exists" not in str(err).lower() and getattr(err, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        version = self.client.create_model_version(
            name,
            source=model_uri,
            run_id=run_id,
            tags={f"tenantml.{k}": _tag(v) for k, v in tags.items()},
            model_id=model_id,
        )
        return str(version.version)

    def versions_for_request(self, tenant: str, model: str, request_id: str) -> list[str]:
        name = registered_model_name(tenant, model)
        found = self.client.search_model_versions(f"name = '{name}' and tags.`tenantml.request_id` = '{request_id}'")
        return sorted((str(v.version) for v in found), key=int)

    def delete_version(self, tenant: str, model: str, version: str) -> None:
        try:
            self.client.delete_model_version(registered_model_name(tenant, model), version)
        except MlflowException as err:
            if not _is_missing(err):
                raise

    def version_tags(self, tenant: str, model: str, version: str) -> dict[str, str]:
        try:
            found = self.client.get_model_version(registered_model_name(tenant, model), version)
        except MlflowException as err:
            raise NotFound(f"model {tenant}.{model} has no version {version}") from err
        return dict(found.tags)

    def champion(self, tenant: str, model: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(registered_model_name(tenant, model), CHAMPION).version)
        except (MlflowException, RestException) as err:
            if _is_missing(err):
                return None
            raise

    def set_champion(self, tenant: str, model: str, version: str) -> None:
        """Point ``champion`` at ``version``; the version it leaves goes on the champion history."""
        name = registered_model_name(tenant, model)
        current = self.champion(tenant, model)
        if current is not None and current != str(version):
            history = [*self.champion_history(tenant, model), current][-HISTORY_LENGTH:]
            self.client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
            self.client.set_registered_model_alias(name, PREVIOUS_CHAMPION, current)
        self.client.set_registered_model_alias(name, CHAMPION, version)

    def champion_history(self, tenant: str, model: str) -> list[str]:
        """Versions that were champion before the current one, oldest first."""
        name = registered_model_name(tenant, model)
        try:
            found = self.client.get_registered_model(name)
        except MlflowException as err:
            if _is_missing(err):
                raise NotFound(f"no model {name}: train it first") from err
            raise
        return [str(v) for v in json.loads(found.tags.get(HISTORY_TAG, "[]"))]

    def rollback_champion(self, tenant: str, model: str) -> tuple[str | None, str]:
        """Undo the last promotion: ``champion`` back to the previous one. Returns (from, to)."""
        name = registered_model_name(tenant, model)
        history = self.champion_history(tenant, model)
        if not history:
            raise InvalidRequest(f"model {name} has no previous champion to roll back to: promote a version instead")
        current, previous = self.champion(tenant, model), history.pop()
        self.client.set_registered_model_alias(name, CHAMPION, previous)
        self.client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        if history:
            self.client.set_registered_model_alias(name, PREVIOUS_CHAMPION, history[-1])
        else:
            self.client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
        return current, previous

    def list_versions(self, tenant: str, model: str) -> list[str]:
        found = self.client.search_model_versions(f"name = '{registered_model_name(tenant, model)}'")
        return sorted((str(v.version) for v in found), key=int)


def _tag(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
