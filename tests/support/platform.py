"""A running embedded platform as tests and benchmarks drive it: tenants, datasets, submissions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

from tenantml.adapters.orchestration import submit_master
from tenantml.domain.request import TrainingRequest
from tenantml.domain.tenant import hash_api_key, new_api_key
from tenantml.bootstrap import Connection
from tenantml.local.embedded import EmbeddedPlatform
from tenantml.settings import Settings
from tenantml.services.admission import Admission, TrainingOrder, submit_training
from tests.support.waiting import wait_for


@dataclass
class RunningPlatform:
    settings: Settings
    connection: Connection
    prefect_api_url: str
    mlflow_uri: str

    def new_tenant(self) -> str:
        name = "t-" + uuid.uuid4().hex[:10]
        self.connection.store.add_tenant(name, hash_api_key(new_api_key()), datetime.now(UTC))
        return name

    def dataset(self, tenant: str, frame: pd.DataFrame, name: str = "data.csv") -> str:
        prefix = self.connection.storage.prefix(tenant)
        prefix.mkdir(parents=True, exist_ok=True)
        frame.to_csv(prefix / name, index=False)
        return name

    def submit(self, tenant: str, dataset: str, algorithm: str = "sgd_classifier", model: str = "m",
               force: bool = False, **params: object) -> Admission:
        order = TrainingOrder(tenant, model, dataset, "label", algorithm, dict(params), force)
        admission = submit_training(self.connection.store, self.connection.storage, order)
        if admission.decision.value == "accepted":
            submit_master({"request_id": admission.request_id}, f"master:{admission.request_id}", self.prefect_api_url)
        return admission

    def request(self, request_id: str) -> TrainingRequest:
        return self.connection.store.get_request(request_id)

    def wait_done(self, request_id: str, timeout_s: float = 240) -> TrainingRequest:
        """Wait until the request has ended and its master has finalized it (promotion, clean-up)."""
        return wait_for(lambda: (r := self.request(request_id)).status.is_terminal and r.finalized_at and r,
                        timeout_s, f"request {request_id} to end")


def classification_frame(rows: int = 20_000, features: int = 10, seed: int = 3) -> pd.DataFrame:
    x, y = make_classification(n_samples=rows, n_features=features, n_informative=6, random_state=seed)
    frame = pd.DataFrame(x.astype(np.float64), columns=[f"x{i}" for i in range(features)])
    frame["label"] = y
    return frame


def start_platform(settings: Settings) -> tuple[EmbeddedPlatform, RunningPlatform]:
    """Start an embedded platform; the caller stops the first element."""
    embedded = EmbeddedPlatform(settings)
    try:
        state = embedded.start(serve_inference=False)
    except BaseException:
        embedded.stop()
        raise
    connected = settings.model_copy(update={
        "mlflow": settings.mlflow.model_copy(update={"tracking_uri": str(state.mlflow_tracking_uri)}),
        "prefect": settings.prefect.model_copy(update={"api_url": str(state.prefect_api_url)}),
    })
    return embedded, RunningPlatform(connected, Connection(connected), str(state.prefect_api_url),
                                     str(state.mlflow_tracking_uri))
