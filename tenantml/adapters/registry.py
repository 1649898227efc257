"""MLflow model registry: one registered model per tenant and model, alias ``champion`` in service.

Nothing from MLflow leaves a method: a missing model, version or alias is :class:`NotFound` (or
an empty answer where "none" is an answer, as for a model without a champion); anything else
MLflow raises becomes :class:`ServiceUnavailable` naming the server (``mlflow_calls``).

Models are logged in the skops format (see :mod:`tenantml.ml.model_files`: a loader that cannot run
code), and each version is registered with ``tenantml.model_digest``, the SHA-256 of its files as the
artifact store holds them, which the inference service checks before it loads a version.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH

from tenantml.adapters.mlflow_errors import is_missing, mlflow_calls
from tenantml.domain.names import registered_model_name
from tenantml.errors import InvalidDataset, InvalidRequest, NotFound
from tenantml.ml.model_files import TRUSTED_TYPES, digest_folder

__all__ = [
    "CHAMPION",
    "DIGEST_TAG",
    "HISTORY_TAG",
    "METRIC_TAG_PREFIX",
    "PIP_REQUIREMENTS",
    "PREVIOUS_CHAMPION",
    "Registry",
    "download_model",
]

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
HISTORY_TAG = "tenantml.champion_history"
HISTORY_LENGTH = 50
METRIC_TAG_PREFIX = "tenantml.metric."
"""A version's metrics are its tags ``tenantml.metric.<name>``, written when it is registered."""
DIGEST_TAG = "tenantml.model_digest"
"""``sha256:<hex>`` of the version's model files (:func:`tenantml.ml.model_files.digest_folder`)."""


def _pinned(*names: str) -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in names]


# Explicit requirements: letting MLflow infer them costs seconds per model.
PIP_REQUIREMENTS = _pinned("scikit-learn", "numpy", "pandas", "skops")


def _exists_already(err: MlflowException) -> bool:
    return getattr(err, "error_code", "") == "RESOURCE_ALREADY_EXISTS" or "already exists" in str(err).lower()


class Registry:
    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def log_model(self, run_id: str, estimator: Any, sample: Any, epoch: int, name: str | None = None) -> str:
        """Log the estimator (native sklearn flavour) under the run; returns the model URI.

        ``name`` is what the MLflow UI lists the logged model as (the worker passes ``<model>-<request>``,
        the run's own name); ``model-lease-<epoch>`` without one. The epoch is also a tag of the model.
        """
        mlflow.set_tracking_uri(self.tracking_uri)
        signature = infer_signature(sample, estimator.predict(sample.to_numpy()))  # fitted on arrays
        with mlflow_calls(self.tracking_uri, f"logging the model of run {run_id}"), mlflow.start_run(run_id=run_id):
            info = mlflow.sklearn.log_model(
                estimator,
                name=name or f"model-lease-{epoch}",
                tags={"tenantml.lease": str(epoch)},
                signature=signature,
                pip_requirements=PIP_REQUIREMENTS,
                serialization_format="skops",
                skops_trusted_types=list(TRUSTED_TYPES),
            )
        return str(info.model_uri)

    def model_digest(self, model_uri: str) -> str:
        """The digest of the model's files as the artifact store holds them now."""
        with tempfile.TemporaryDirectory(prefix="tenantml-digest-") as folder:
            with mlflow_calls(self.tracking_uri, f"reading the files of {model_uri}"):
                local = download_model(self.tracking_uri, model_uri, folder)
            return digest_folder(local)

    def register(
        self, tenant: str, model: str, model_uri: str, run_id: str, tags: Mapping[str, object]
    ) -> str:
        """Register ``model_uri`` as a new version with ``tags`` and the digest of its files.

        A tag value over MLflow's limit is a user error (InvalidDataset), found before anything is
        written; if creating the version fails, a registered model this call created is deleted
        again, so no empty model is left behind.
        """
        name = registered_model_name(tenant, model)
        values = {f"tenantml.{k}": _tag(v) for k, v in tags.items()}
        for key, value in values.items():
            if len(value) > MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH:
                raise InvalidDataset(
                    f"{key} of {name} would be {len(value)} characters, over MLflow's limit of "
                    f"{MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH}: use fewer or shorter column names"
                )
        values[DIGEST_TAG] = self.model_digest(model_uri)
        with mlflow_calls(self.tracking_uri, f"registering a version of {name}"):
            created = False
            try:
                self.client.create_registered_model(name, tags={"tenantml.tenant": tenant, "tenantml.model": model})
                created = True
            except MlflowException as err:
                if not _exists_already(err):
                    raise
            model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
            try:
                version = self.client.create_model_version(
                    name, source=model_uri, run_id=run_id, tags=values, model_id=model_id
                )
            except Exception:
                if created:
                    self._delete_if_empty(name)
                raise
        return str(version.version)

    def _delete_if_empty(self, name: str) -> None:
        try:
            if not self.client.search_model_versions(f"name = '{name}'"):
                self.client.delete_registered_model(name)
        except MlflowException:  # the version's own failure is the one to report
            pass

    def versions_for_request(self, tenant: str, model: str, request_id: str) -> list[str]:
        name = registered_model_name(tenant, model)
        return self._versions(name, f"name = '{name}' and tags.`tenantml.request_id` = '{request_id}'")

    def list_versions(self, tenant: str, model: str) -> list[str]:
        name = registered_model_name(tenant, model)
        return self._versions(name, f"name = '{name}'")

    def _versions(self, name: str, filter_string: str) -> list[str]:
        with mlflow_calls(self.tracking_uri, f"listing the versions of {name}"):
            found = self.client.search_model_versions(filter_string)
        return sorted((str(v.version) for v in found), key=int)

    def delete_version(self, tenant: str, model: str, version: str) -> None:
        name = registered_model_name(tenant, model)
        with mlflow_calls(self.tracking_uri, f"deleting version {version} of {name}"):
            try:
                self.client.delete_model_version(name, version)
            except MlflowException as err:
                if not is_missing(err):
                    raise

    def version_metrics(self, tenant: str, model: str, version: str) -> dict[str, float]:
        """The metrics the version was registered with; NotFound if there is no such version."""
        name = registered_model_name(tenant, model)
        with mlflow_calls(self.tracking_uri, f"reading version {version} of {name}"):
            try:
                tags = self.client.get_model_version(name, version).tags
            except MlflowException as err:
                if is_missing(err):
                    raise NotFound(f"model {name} has no version {version}: see `tenantml model list`") from err
                raise
        return {k.removeprefix(METRIC_TAG_PREFIX): float(v) for k, v in tags.items() if k.startswith(METRIC_TAG_PREFIX)}

    def list_models(self, tenant: str) -> list[tuple[str, str | None, str | None]]:
        """The tenant's models by name, each as ``(model, champion, previous champion)``."""
        prefix = registered_model_name(tenant, "")
        with mlflow_calls(self.tracking_uri, f"listing the models of tenant {tenant!r}"):
            found = self.client.search_registered_models(filter_string=f"name LIKE '{prefix}%'")
        models = []
        for registered in sorted(found, key=lambda r: r.name):
            if not registered.name.startswith(prefix):  # LIKE reads a '_' in the tenant as any character
                continue
            aliases = {alias: str(version) for alias, version in (registered.aliases or {}).items()}
            models.append((registered.name[len(prefix):], aliases.get(CHAMPION), aliases.get(PREVIOUS_CHAMPION)))
        return models

    def champion(self, tenant: str, model: str) -> str | None:
        name = registered_model_name(tenant, model)
        with mlflow_calls(self.tracking_uri, f"reading the champion of {name}"):
            try:
                return str(self.client.get_model_version_by_alias(name, CHAMPION).version)
            except MlflowException as err:
                if is_missing(err):
                    return None
                raise

    def set_champion(self, tenant: str, model: str, version: str) -> None:
        """Point ``champion`` at ``version``; the version it leaves goes on the champion history."""
        name = registered_model_name(tenant, model)
        current = self.champion(tenant, model)
        leaving = current is not None and current != str(version)
        history = [*self.champion_history(tenant, model), current][-HISTORY_LENGTH:] if leaving else []
        with mlflow_calls(self.tracking_uri, f"making version {version} the champion of {name}"):
            if leaving:
                self.client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
                self.client.set_registered_model_alias(name, PREVIOUS_CHAMPION, str(current))
            self.client.set_registered_model_alias(name, CHAMPION, version)

    def champion_history(self, tenant: str, model: str) -> list[str]:
        """Versions that were champion before the current one, oldest first."""
        name = registered_model_name(tenant, model)
        with mlflow_calls(self.tracking_uri, f"reading the champion history of {name}"):
            try:
                found = self.client.get_registered_model(name)
            except MlflowException as err:
                if is_missing(err):
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
        with mlflow_calls(self.tracking_uri, f"rolling the champion of {name} back to version {previous}"):
            self.client.set_registered_model_alias(name, CHAMPION, previous)
            self.client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
            if history:
                self.client.set_registered_model_alias(name, PREVIOUS_CHAMPION, history[-1])
            else:
                self.client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
        return current, previous


def download_model(tracking_uri: str, model_uri: str, folder: str) -> str:
    """Download a model's files (``models:/...`` or ``runs:/...``) into ``folder``; returns their path."""
    return str(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder, tracking_uri=tracking_uri,
                                                  registry_uri=tracking_uri))


def _tag(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
