"""Models, tenants and a real `bentoml serve` of serving/service.py, for inference tests and benchmarks.

Models are trained tiny and logged exactly the way training does it (``Registry.log_model`` with the
native sklearn flavour in the skops format, then ``Registry.register`` with the feature schema tag and
the digest of the model's files).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from tenantml.adapters.database import create_database
from tenantml.adapters.registry import Registry
from tenantml.adapters.store import Store
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.local.processes import claim_port
from tenantml.local.project import project_dir
from tenantml.local.servers import Server, inference_server

__all__ = [
    "FEATURES",
    "PROJECT_DIR",
    "InferenceServer",
    "add_tenant",
    "register_model",
    "rows_for",
    "start_inference_server",
    "train_model",
]

PROJECT_DIR = project_dir()
FEATURES = (("age", "int64"), ("income", "float64"), ("member", "bool"), ("score", "float64"))


def train_model(seed: int, n_rows: int = 400, ballast_mb: float = 0.0) -> tuple[Pipeline, pd.DataFrame]:
    """A scaled SGD classifier (what ``sgd_classifier`` trains) on four mixed-type features.

    ``ballast_mb`` adds an array of random floats to the estimator, to make its memory visible.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, n_rows),
            "income": rng.normal(3.0, 1.0, n_rows),
            "member": rng.random(n_rows) < 0.5,
            "score": rng.normal(0.0, 1.0, n_rows),
        }
    )
    features = frame.to_numpy(dtype=np.float64)
    weights = rng.normal(0, 1, features.shape[1])
    target = np.where((features - features.mean(axis=0)) / features.std(axis=0) @ weights > 0, "yes", "no")
    model = Pipeline([("scale", StandardScaler()), ("model", SGDClassifier(loss="log_loss", random_state=seed))])
    model.fit(features, target)
    if ballast_mb:
        model.ballast_ = rng.random(int(ballast_mb * 2**20 / 8))  # type: ignore[attr-defined]
    return model, frame


def rows_for(frame: pd.DataFrame, count: int) -> list[dict[str, Any]]:
    """JSON-ready rows: Python ints, floats and bools, as a client would send them."""
    return [
        {"age": int(r.age), "income": float(r.income), "member": bool(r.member), "score": float(r.score)}
        for r in frame.head(count).itertuples()
    ]


def register_model(
    tracking_uri: str,
    tenant: str,
    model: str,
    estimator: Any,
    frame: pd.DataFrame,
    promote: bool = True,
    source: str | None = None,
) -> tuple[str, str]:
    """Log (unless ``source`` is given) and register a version; returns (version, model URI)."""
    registry = Registry(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(tenant)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(tenant)
    run = client.create_run(experiment_id, tags={"tenantml.tenant": tenant})
    if source is None:
        sample = pd.DataFrame(frame.head(5).to_numpy(dtype=np.float64), columns=list(frame.columns))
        source = registry.log_model(run.info.run_id, estimator, sample, epoch=1)
    client.set_terminated(run.info.run_id)
    version = registry.register(
        tenant, model, source, run.info.run_id,
        {"request_id": str(uuid.uuid4()), "features": [list(f) for f in FEATURES], "metric.accuracy": "0.9"},
    )
    if promote:
        registry.set_champion(tenant, model, version)
    return version, source


def add_tenant(database_url: str, tenant: str) -> str:
    """Create the tenant in the platform database; returns its API key."""
    engine = create_database(database_url)
    try:
        api_key = new_api_key()
        Store(engine).add_tenant(tenant, hash_api_key(api_key), datetime.now(UTC))
        return api_key
    finally:
        engine.dispose()


InferenceServer = Server


def start_inference_server(
    home: Path, tracking_uri: str, database_url: str, settings: Mapping[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> InferenceServer:
    """`bentoml serve` of serving/service.py on a free port, its home and logs in ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTML_")}
    env.update(
        TENANTML_HOME=str(home),
        TENANTML_DATABASE__URL=database_url,
        TENANTML_MLFLOW__TRACKING_URI=tracking_uri,
        MLFLOW_TRACKING_URI=tracking_uri,
        **(settings or {}),
    )
    port = claim_port("inference service", 0)
    return inference_server(port, env, home, PROJECT_DIR, home / "logs", extra_args=extra_args or ()).wait_ready()
