"""The lower bound of the inference benchmark: a bare FastAPI endpoint on uvicorn, one worker.

Same model (loaded with ``mlflow.sklearn.load_model`` from ``BENCH_MODEL_DIR``), same request and
response bodies as the inference service; no auth, no schema check, no registry. Run it with
``uvicorn --factory tests.benchmarks.bare_endpoint:create_app``.
"""

from __future__ import annotations

import json
import os

import mlflow.sklearn
import numpy as np
from fastapi import FastAPI, Request


def create_app() -> FastAPI:
    model = mlflow.sklearn.load_model(os.environ["BENCH_MODEL_DIR"])
    names = json.loads(os.environ["BENCH_FEATURES"])
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, object]:
        body = await request.json()
        matrix = np.asarray([[float(row[name]) for name in names] for row in body["rows"]], dtype=np.float64)
        return {"predictions": model.predict(matrix).tolist(), "model_version": "1"}

    return app
