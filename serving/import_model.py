"""Import a tenant's champion (or a given version) from the MLflow registry into the BentoML model store.

The explicit step between MLflow and BentoML: the version is loaded the way the inference service
loads it (its digest checked, its skops file read with the trusted types only) and saved into the
BentoML store as ``<slug>-<hash>:v<version>`` (see :mod:`tenantml.inference.bento_names`): a
``model.skops`` file, never a pickle, labelled with its registry name, version, run and tenant, its
feature schema and the file's SHA-256 in the metadata. The inference service loads a
version from the store when it is there, so an imported champion is served without reaching
MLflow's artifact store; which version is the champion still comes from the registry alias.

    python serving/import_model.py --tenant acme --model churn [--version 3] [--json]

``BENTOML_HOME`` defaults to ``$TENANTML_HOME/bentoml``, the store ``tenantml up`` serves from. Then
``bentoml build -f serving/bentofile.yaml .`` (from the project folder) builds the service's Bento.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tenantml.errors import InvalidRequest, TenantmlError
from tenantml.settings import Settings, load_settings

__all__ = ["import_champion", "main"]


def import_champion(settings: Settings, tenant: str, model: str, version: str | None = None) -> dict[str, Any]:
    """Import one version (default: the champion); idempotent. Returns the tag, labels and metadata."""
    os.environ.setdefault("BENTOML_HOME", str(settings.home.resolve() / "bentoml"))
    import bentoml
    from bentoml.exceptions import NotFound as BentoNotFound

    from tenantml.domain.names import check_model_name, check_tenant_name
    from tenantml.inference.bento_names import bento_labels, bento_tag
    from tenantml.inference.mlflow_source import MlflowModels
    from tenantml.bootstrap import Connection

    check_tenant_name(tenant)
    check_model_name(model)
    models = MlflowModels(Connection(settings).tracking_uri)
    if version is None:
        version = models.champion(tenant, model)
        if version is None:
            raise InvalidRequest(f"model {tenant}.{model} has no champion: name a --version, or promote one")
    tag = bento_tag(tenant, model, version)
    try:
        stored = bentoml.models.get(tag)
        imported = False
    except BentoNotFound:
        import skops.io

        from tenantml.inference.bento_names import BENTO_FILE, BENTO_FILE_DIGEST
        from tenantml.ml.model_files import bytes_digest

        loaded = models.load(tenant, model, version)
        content = skops.io.dumps(loaded.estimator)
        metadata = {"features": loaded.schema.to_tag(), "tracking_uri": models.tracking_uri,
                    BENTO_FILE_DIGEST: bytes_digest(content)}
        with bentoml.models.create(tag, labels=bento_labels(tenant, model, version, loaded.run_id),
                                   metadata=metadata) as created:
            Path(created.path_of(BENTO_FILE)).write_bytes(content)
        stored = bentoml.models.get(tag)  # where it landed in the store
        imported = True
    return {
        "tag": str(stored.tag),
        "imported": imported,
        "labels": dict(stored.info.labels),
        "path": stored.path,
        "bentoml_home": os.environ["BENTOML_HOME"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", help="a registered version (default: the champion)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = import_champion(load_settings(), args.tenant, args.model, args.version)
    except TenantmlError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, InvalidRequest) else 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        verb = "imported" if result["imported"] else "already in the store:"
        print(f"{verb} {result['tag']} ({result['labels'].get('registry_name')} "
              f"version {result['labels'].get('registry_version')}) into {result['bentoml_home']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
