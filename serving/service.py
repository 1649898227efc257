"""The inference service: one BentoML service for every tenant.

``POST /predict`` with ``Authorization: Bearer <tenant API key>`` and
``{"model": "<model>", "rows": [{"<feature>": value, ...}]}`` answers
``{"predictions": [...], "model_version": "<n>"}``; see DESIGN.md for the error statuses.

* Auth: :class:`~tenantml.inference.gate.TenantGate` (an ASGI middleware) maps the key's SHA-256
  to a tenant in the platform database and checks the body's size and shape, before any of it
  reaches BentoML's parser.
* Models: the champion of ``<tenant>.<model>`` in the MLflow registry, loaded on demand into an LRU
  cache (``TENANTML_SERVING__MODEL_CACHE_SIZE``) once its files match the digest recorded at
  registration, from a skops file read with the platform's trusted types (no pickle: loading cannot
  run code); a version imported into the BentoML model store by ``serving/import_model.py`` is
  loaded from there, its skops file checked the same way. A version without a digest, or whose
  files do not match it, is refused with 503 (:class:`~tenantml.errors.UntrustedModel`).
  A promotion is served within ``TENANTML_SERVING__CHAMPION_REFRESH_S``, without a restart.
* Latency tail: after start-up and after every model load the heap is frozen (``gc.freeze()``),
  so garbage collections stop walking the hundreds of thousands of long-lived objects that
  MLflow, BentoML and the models bring (``bentoml serve ... --arg gc_freeze=false`` turns it off).
* Logs: no input values; errors are logged by type and model name only.

* Docs: Swagger UI at ``/docs`` (and BentoML's page at ``/``), the OpenAPI document at ``/docs.json``.

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
from pathlib import Path
from typing import Any

import bentoml
import orjson
from bentoml.exceptions import NotFound as BentoNotFound
from pydantic import BaseModel, Field
from starlette.responses import Response

from tenantml.errors import TenantmlError
from tenantml.inference.bento_names import BENTO_FILE, BENTO_FILE_DIGEST, bento_tag
from tenantml.inference.cache import ModelCache, ModelKey
from tenantml.inference.champion import ChampionResolver
from tenantml.errors import Unauthorized, UntrustedModel
from tenantml.inference.statuses import http_status
from tenantml.inference.gate import TENANT_STATE, GateConfig, TenantGate, error_body
from tenantml.inference.keys import TenantKeys
from tenantml.inference.openapi import DOCS_PATH, SPEC_PATH, document, swagger_page
from tenantml.inference.predictor import Inference, LoadedModel
from tenantml.inference.schema import FeatureSchema
from tenantml.ml.model_files import UntrustedTypes, file_digest, load_estimator
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
        except Exception as err:  # noqa: BLE001 - any failure means "not ready"
            log.warning("not ready: %s", type(err).__name__)
            return False


def _flag(name: str) -> bool:
    """A switch given as ``bentoml serve ... --arg <name>=false`` (benchmarks use them); on by default."""
    try:
        value = str(getattr(bentoml.use_arguments(), name, "true"))
    except Exception:  # noqa: BLE001 - not running under `bentoml serve`
        return True
    return value.lower() not in ("0", "false", "no", "off")


class _WithoutTraceback(logging.Filter):
    """Request-path errors are logged by type only: a traceback can quote the request (pydantic does)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            kind = type(record.exc_info[1]).__name__
            record.msg = f"{record.msg} ({kind}; traceback withheld, it may quote request data)"
            record.exc_info, record.exc_text = None, None
        return True


def _withhold_request_tracebacks() -> None:
    for name in ("bentoml._internal.server.http_app", "uvicorn.error"):
        logging.getLogger(name).addFilter(_WithoutTraceback())


def _freeze_heap() -> None:
    gc.collect()
    gc.freeze()


def _load(models: Any, gc_freeze: bool, tenant: str, model: str, version: str) -> LoadedModel:
    """From the BentoML model store if imported there, else from the MLflow registry."""
    started = time.perf_counter()
    loaded, source = _from_bento_store(tenant, model, version), "the BentoML model store"
    if loaded is None:
        loaded, source = models.load(tenant, model, version), "the MLflow registry"
    if gc_freeze:
        _freeze_heap()
    log.info("loaded %s.%s version %s from %s in %.0f ms", tenant, model, version, source,
             1000 * (time.perf_counter() - started))
    return loaded


def _from_bento_store(tenant: str, model: str, version: str) -> LoadedModel | None:
    """An imported version, its skops file checked against its digest and loaded with the trusted types.

    A version imported before the store held skops files (a pickle) is not loaded: the registry's
    copy, with its digest, is loaded instead.
    """
    try:
        stored = bentoml.models.get(bento_tag(tenant, model, version))
    except BentoNotFound:
        return None
    file = Path(stored.path_of(BENTO_FILE))
    recorded = stored.info.metadata.get(BENTO_FILE_DIGEST)
    if not recorded or not file.is_file():
        log.warning("%s.%s version %s in the BentoML store is not a skops import: loading it from the registry",
                    tenant, model, version)
        return None
    if file_digest(file) != recorded:
        raise UntrustedModel(model, version, f"its {BENTO_FILE} in the BentoML store does not match its digest")
    try:
        estimator = load_estimator(file)
    except UntrustedTypes as err:
        raise UntrustedModel(model, version, str(err)) from None
    schema = FeatureSchema.from_tag(str(stored.info.metadata["features"]))
    return LoadedModel(tenant, model, version, estimator, schema, run_id=stored.info.labels.get("run_id"))


@functools.cache
def runtime() -> Runtime:
    from tenantml.bootstrap import Connection

    settings = load_settings()
    serving = settings.serving
    connection = Connection(settings, create_schema=False)
    tracking_uri, engine, models = connection.tracking_uri, connection.store.engine, connection.inference_models
    gc_freeze = _flag("gc_freeze")
    logging.getLogger("tenantml").setLevel(logging.INFO)
    _withhold_request_tracebacks()
    resolver = ChampionResolver(models.champion, serving.champion_refresh_s)
    cache: ModelCache[ModelKey, LoadedModel] = ModelCache(serving.model_cache_size)
    inference = Inference(resolver, cache, functools.partial(_load, models, gc_freeze))
    keys = TenantKeys(connection.store.tenant_for_key)
    return Runtime(settings, inference, keys, tracking_uri, gc_freeze, engine)


def gate_config() -> GateConfig:
    current = runtime()
    return GateConfig(keys=current.keys, max_body_bytes=current.settings.serving.max_body_bytes)


class _RequestTimeout:
    """BentoML's request timeout (``traffic.timeout``), with its timer cancelled when the response starts.

    BentoML 1.4's ``TimeoutMiddleware`` never cancels its ``loop.call_later`` timer, so every request
    keeps its context (tracing span and all) alive for the whole timeout, 60 s by default: hundreds of
    thousands of live objects under load, which every full garbage collection walks. That, not the
    models, is most of BentoML's p99 tail. Same behaviour otherwise: 504 if no response starts in time.
    """

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = loop.create_future()
        timer = loop.call_later(self.timeout, _expire, started)

        async def send_and_mark(message: Any) -> None:
            if not started.done():
                started.set_result(None)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, send_and_mark))
        try:
            await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED)
            if started.done() and started.exception() is not None and task.cancel():
                body = f'{{"error": "not able to process the request in {self.timeout} seconds"}}'.encode()
                await Response(body, status_code=504, media_type="application/json")(scope, receive, send)
                return
            await task
        finally:
            timer.cancel()
            if not started.done():
                started.cancel()


def _expire(started: asyncio.Future[None]) -> None:
    if not started.done():
        started.set_exception(TimeoutError())


PATCHED_BENTOML = "1.4.40"  # the version whose TimeoutMiddleware this replaces


def _use_cancelling_timeout() -> None:
    """Swap BentoML's timeout middleware for the one above (``--arg timeout_fix=false`` keeps BentoML's).

    Only on the BentoML version it was written against: another version keeps its own middleware.
    """
    from bentoml._internal.server.http import traffic

    if not _flag("timeout_fix") or not hasattr(traffic, "TimeoutMiddleware"):
        return
    if bentoml.__version__ != PATCHED_BENTOML:
        logging.getLogger(__name__).warning(
            "BentoML %s is not %s: keeping its own timeout middleware (expect a longer p99 tail)",
            bentoml.__version__, PATCHED_BENTOML)
        return
    traffic.TimeoutMiddleware = _RequestTimeout  # type: ignore[misc,assignment]


_use_cancelling_timeout()


def _json(ctx: bentoml.Context, body: bytes, status: int = 200) -> Any:
    ctx.response.status_code = status  # BentoML copies it onto the response we return
    return Response(body, status_code=status, media_type="application/json")


@bentoml.service(
    name="tenantml-inference",
    workers=1,
    traffic={"timeout": 60},
    http={"host": "127.0.0.1"},
    # Per-request access lines and trace spans cost a third of a request's CPU; with no trace
    # exporter configured the spans go nowhere, and one access line per prediction fills the log
    # folder. Errors are still logged; Prometheus metrics stay on (/metrics).
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/predict"]},
)
class TenantInference:
    """Predictions from each tenant's champion models; the tenant comes from the API key."""

    def __init__(self) -> None:
        self.runtime = runtime()
        # Rows are checked finite by the feature schema: sklearn need not check again (this thread
        # runs the small predictions; sklearn's configuration is per thread).
        import sklearn

        sklearn.set_config(assume_finite=True)
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
    async def predict(self, model: str, rows: list[Any], ctx: bentoml.Context) -> Prediction:
        """Predict ``rows`` (objects of feature values) with the champion version of the caller's ``model``."""
        tenant = getattr(ctx.request.state, TENANT_STATE, None) if ctx.request is not None else None
        try:
            if tenant is None:
                raise Unauthorized()
            answer = await self.runtime.inference.predict_async(tenant, model, rows)
        except TenantmlError as err:
            status = http_status(err)
            if status >= 500:
                log.warning("tenant %s model %r: %s", tenant, model[:128], err)
            return _json(ctx, error_body(err), status)
        except Exception as err:  # noqa: BLE001 - answer 500 without a traceback that may echo rows
            log.error("tenant %s model %r: unexpected %s", tenant, model[:128], type(err).__name__)
            return _json(ctx, b'{"error": "internal error: see the service log"}', 500)
        return _json(ctx, orjson.dumps(answer))

    async def __is_ready__(self) -> bool:
        now = time.monotonic()
        if now - self._ready_at > READY_CACHE_S:
            self._ready = await asyncio.to_thread(self.runtime.ready)
            self._ready_at = now
        return self._ready

    async def __is_alive__(self) -> bool:
        return True


class _Docs:
    """``GET /docs``: Swagger UI; ``GET /docs.json``: the service's contract (tenantml.inference.openapi)
    instead of BentoML's generated spec, so BentoML's own page at ``/`` shows it as well."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path") if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") else None
        if path == SPEC_PATH:
            await Response(orjson.dumps(_spec()), media_type="application/json")(scope, receive, send)
        elif path in (DOCS_PATH, DOCS_PATH + "/"):
            await Response(swagger_page(), media_type="text/html")(scope, receive, send)
        else:
            await self.app(scope, receive, send)


@functools.cache
def _spec() -> dict[str, Any]:
    return document(TenantInference.openapi_spec.asdict())  # type: ignore[attr-defined]


# bentoml.service returns a Service wrapper whose stubs do not declare add_asgi_middleware.
TenantInference.add_asgi_middleware(TenantGate, setup=gate_config)  # type: ignore[attr-defined]
TenantInference.add_asgi_middleware(_Docs)  # type: ignore[attr-defined]

__all__ = ["Prediction", "TenantInference", "runtime"]
