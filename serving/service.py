"""The inference service: one BentoML service for every tenant.

``POST /predict`` with ``Authorization: Bearer <tenant API key>`` and
``{"model": "<model>", "rows": [{"<feature>": value, ...}]}`` answers
``{"predictions": [...], "model_version": "<n>"}``; see DESIGN.md for the error statuses.

* Auth: :class:`~tenantml.inference.gate.TenantGate` (an ASGI middleware) maps the key's SHA-256
  to a tenant in the platform database and checks the body's size and shape, before any of it
  reaches BentoML's parser.
* Models: the champion of ``<tenant>.<model>`` in the MLflow registry, loaded on demand with the
  native sklearn flavour into an LRU cache (``TENANTML_SERVING__MODEL_CACHE_SIZE``); a version
  imported into the BentoML model store by ``serving/import_model.py`` is loaded from there.
  A promotion is served within ``TENANTML_SERVING__CHAMPION_REFRESH_S``, without a restart.
* Latency tail: after start-up and after every model load the heap is frozen (``gc.freeze()``),
  so garbage collections stop walking the hundreds of thousands of long-lived objects that
  MLflow, BentoML and the models bring (``bentoml serve ... --arg gc_freeze=false`` turns it off).
* Logs: no input values; errors are logged by type and model name only.

Run: ``bentoml serve serving.service:TenantInference --working-dir . --host 127.0.0.1 --port 3000``
(``tenantml up`` does it). Settings come from ``TENANTML_*`` variables, read when a worker starts.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import bentoml
import orjson
from pydantic import BaseModel, Field
from starlette.responses import Response

from tenantml.errors import TenantmlError
from tenantml.inference.bento_names import bento_tag
from tenantml.inference.cache import ModelCache, ModelKey
from tenantml.inference.champion import ChampionResolver
from tenantml.inference.errors import Unauthorized, http_status
from tenantml.inference.gate import TENANT_STATE, GateConfig, TenantGate, error_body
from tenantml.inference.keys import TenantKeys
from tenantml.inference.predictor import Inference, LoadedModel
from tenantml.inference.schema import FeatureSchema
from tenantml.settings import Settings, load_settings

log = logging.getLogger("tenantml.serving")

READY_CACHE_S = 2.0


class Prediction(BaseModel):
    predictions: list[Any] = Field(description="One prediction per row, in order")
    model_version: str = Field(description="The registered model version that answered")


@dataclass
class Runtime:
    """What a worker process needs, built once when it starts (never at import)."""

    settings: Settings
    inference: Inference
    keys: TenantKeys
    tracking_uri: str
    gc_freeze: bool
    engine: Any

    def ready(self) -> bool:
        from sqlalchemy import text

        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            with urllib.request.urlopen(f"{self.tracking_uri}/health", timeout=2) as response:
                return bool(response.status == 200)
        except Exception as err:
            log.warning("not ready: %s", type(err).__name__)
            return False


def _argument(name: str, default: str) -> str:
    try:
        return str(getattr(bentoml.use_arguments(), name, default))
    except Exception:  # not running under `bentoml serve`
        return default


def _freeze_heap() -> None:
    gc.collect()
    gc.freeze()


def _load(models: Any, gc_freeze: bool, tenant: str, model: str, version: str) -> LoadedModel:
    """From the BentoML model store if imported there, else from the MLflow registry."""
    started = time.perf_counter()
    loaded = _from_bento_store(tenant, model, version) or models.load(tenant, model, version)
    if gc_freeze:
        _freeze_heap()
    log.info("loaded %s.%s version %s in %.0f ms", tenant, model, version, 1000 * (time.perf_counter() - started))
    return loaded


def _from_bento_store(tenant: str, model: str, version: str) -> LoadedModel | None:
    try:
        stored = bentoml.models.get(bento_tag(tenant, model, version))
    except bentoml.exceptions.NotFound:
        return None
    estimator = bentoml.sklearn.load_model(stored)
    schema = FeatureSchema.from_tag(stored.info.metadata["features"])
    return LoadedModel(tenant, model, version, estimator, schema, run_id=stored.info.labels.get("run_id"))


@functools.cache
def runtime() -> Runtime:
    from tenantml.adapters.database import create_database
    from tenantml.adapters.store import Store
    from tenantml.inference.mlflow_source import MlflowModels
    from tenantml.platform.connection import Connection

    settings = load_settings()
    serving = settings.serving
    tracking_uri = Connection(settings).tracking_uri
    engine = create_database(settings.database_url, create_schema=False)
    models = MlflowModels(tracking_uri)
    gc_freeze = _argument("gc_freeze", "true").lower() not in ("0", "false", "no", "off")
    resolver = ChampionResolver(models.champion, serving.champion_refresh_s)
    cache: ModelCache[ModelKey, LoadedModel] = ModelCache(serving.model_cache_size)
    inference = Inference(resolver, cache, functools.partial(_load, models, gc_freeze))
    keys = TenantKeys(Store(engine).tenant_for_key)
    return Runtime(settings, inference, keys, tracking_uri, gc_freeze, engine)


def gate_config() -> GateConfig:
    current = runtime()
    return GateConfig(keys=current.keys, max_body_bytes=current.settings.serving.max_body_bytes)


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


@bentoml.service(
    name="tenantml-inference",
    workers=1,
    traffic={"timeout": 60},
    http={"host": "127.0.0.1"},
)
class TenantInference:
    """Predictions from each tenant's champion models; the tenant comes from the API key."""

    def __init__(self) -> None:
        self.runtime = runtime()
        self._ready_at = 0.0
        self._ready = False
        if self.runtime.gc_freeze:
            _freeze_heap()
        log.info(
            "inference ready: cache %d models, champion refresh %.1f s, gc freeze %s",
            self.runtime.settings.serving.model_cache_size,
            self.runtime.settings.serving.champion_refresh_s,
            self.runtime.gc_freeze,
        )

    @bentoml.api(route="/predict")
    async def predict(self, model: str, rows: list[dict[str, Any]], ctx: bentoml.Context) -> Prediction:
        """Predict ``rows`` with the champion version of the caller's ``model``."""
        tenant = getattr(ctx.request.state, TENANT_STATE, None) if ctx.request is not None else None
        try:
            if tenant is None:
                raise Unauthorized()
            answer = await self.runtime.inference.predict_async(tenant, model, rows)
        except TenantmlError as err:
            status = http_status(err)
            if status >= 500:
                log.warning("tenant %s model %r: %s", tenant, model[:128], err)
            return _json(error_body(err), status)  # type: ignore[return-value]
        except Exception as err:
            log.error("tenant %s model %r: unexpected %s", tenant, model[:128], type(err).__name__)
            return _json(b'{"error": "internal error: see the service log"}', 500)  # type: ignore[return-value]
        return _json(orjson.dumps(answer))  # type: ignore[return-value]

    async def __is_ready__(self) -> bool:
        now = time.monotonic()
        if now - self._ready_at > READY_CACHE_S:
            self._ready = await asyncio.to_thread(self.runtime.ready)
            self._ready_at = now
        return self._ready

    async def __is_alive__(self) -> bool:
        return True


TenantInference.add_asgi_middleware(TenantGate, setup=gate_config)

__all__ = ["Prediction", "TenantInference", "runtime"]
