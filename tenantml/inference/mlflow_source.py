"""The MLflow side of inference (an adapter): ask the registry for champions, load model versions.

A version is loaded only if its files, as downloaded, match the digest the platform recorded at
registration (``tenantml.model_digest``); a version without one is refused too. Only then is its
``model.skops`` read, with the platform's own list of trusted types (:mod:`tenantml.ml.model_files`),
never through ``mlflow.sklearn.load_model``, which would take the trusted types (or a pickle) from the
model's own files. The digest is checked once per load: a loaded model stays in the service's cache,
so requests pay nothing for it. The feature schema comes from the version's ``tenantml.features``
tag; a version registered without it falls back to the model's MLflow signature.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tenantml.adapters.mlflow_errors import is_missing
from tenantml.adapters.registry import DIGEST_TAG, Registry, download_model
from tenantml.domain.names import registered_model_name
from tenantml.errors import ModelNotFound, ModelUnavailable, UntrustedModel
from tenantml.ml.model_files import SKOPS_FILE, UntrustedTypes, digest_folder, load_estimator
from tenantml.inference.predictor import LoadedModel
from tenantml.inference.schema import Feature, FeatureSchema

__all__ = ["FEATURES_TAG", "MlflowModels", "schema_from_signature"]

FEATURES_TAG = "tenantml.features"

# MLflow signature types → the pandas dtypes the feature schema speaks.
_SIGNATURE_DTYPES = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
}


def schema_from_signature(model_dir: str) -> FeatureSchema | None:
    """The feature schema from a downloaded model's MLmodel signature, if it has named columns."""
    from mlflow.models import Model

    signature = Model.load(model_dir).signature
    inputs = signature.inputs if signature is not None else None
    if inputs is None or not inputs.has_input_names():
        return None
    features = []
    for spec in inputs.inputs:
        kind = getattr(getattr(spec, "type", None), "name", "double")
        features.append(Feature(str(spec.name), _SIGNATURE_DTYPES.get(str(kind), "float64")))
    return FeatureSchema(features)


class MlflowModels:
    """Champion lookups and model loads against one MLflow tracking server (and its registry)."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.registry = Registry(tracking_uri)
        self.client: MlflowClient = self.registry.client
        # models:/ URIs resolve against the process-wide registry URI.
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)

    def champion(self, tenant: str, model: str) -> str | None:
        return self.registry.champion(tenant, model)

    def load(self, tenant: str, model: str, version: str) -> LoadedModel:
        name = registered_model_name(tenant, model)
        try:
            found = self.client.get_model_version(name, version)
        except MlflowException as err:
            if is_missing(err):
                raise ModelNotFound(model) from None
            raise ModelUnavailable(f"the registry cannot be reached to load {model!r} version {version}") from err
        tags = dict(found.tags)
        recorded = tags.get(DIGEST_TAG)
        if not recorded:
            raise UntrustedModel(model, str(version), f"it has no {DIGEST_TAG} recorded at registration")
        try:
            with tempfile.TemporaryDirectory(prefix="tenantml-model-") as folder:
                # The version's source, as registration digested it (models:/<name>/<version> adds a file).
                local = download_model(self.tracking_uri, str(found.source), folder)
                if digest_folder(local) != recorded:
                    raise UntrustedModel(model, str(version), f"its files do not match its {DIGEST_TAG}")
                if not (Path(local) / SKOPS_FILE).is_file():
                    raise UntrustedModel(model, str(version), f"it has no {SKOPS_FILE} (only skops models are loaded)")
                try:
                    estimator = load_estimator(Path(local) / SKOPS_FILE)
                except UntrustedTypes as err:
                    raise UntrustedModel(model, str(version), str(err)) from None
                schema = _schema(tags, local)
        except (ModelNotFound, ModelUnavailable):
            raise
        except Exception as err:
            raise ModelUnavailable(
                f"model {model!r} version {version} cannot be loaded ({type(err).__name__}): "
                "check that it was logged with the sklearn flavour"
            ) from err
        return LoadedModel(tenant, model, str(version), estimator, schema, run_id=found.run_id)


def _schema(tags: dict[str, str], model_dir: str) -> FeatureSchema:
    if FEATURES_TAG in tags:
        return FeatureSchema.from_tag(tags[FEATURES_TAG])
    schema = schema_from_signature(model_dir)
    if schema is None:
        raise ModelUnavailable(
            f"the model has neither a {FEATURES_TAG} tag nor a signature with named inputs: "
            "register it with tenantml, or log it with a signature"
        )
    return schema
