"""Answer a tenant's inference request: resolve the champion, fetch the model from the cache, predict.

The tenant is always an argument given by the edge (from the caller's key), never read from the
request body; the registered model is ``<tenant>.<model>``, so one tenant cannot name another's.
An unknown model and another tenant's model give the same :class:`ModelNotFound`.

:class:`Inference` has a blocking API (for scripts and tests) and an ``async`` one for the HTTP
service: on the event loop, a request whose champion is known and whose model is cached does no
I/O at all; registry lookups and model loads run in threads, and a champion that is due a
refresh is served while the refresh runs in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tenantml.domain.names import check_model_name
from tenantml.errors import InvalidRequest, TenantmlError
from tenantml.inference.batching import MicroBatcher
from tenantml.inference.cache import ModelCache, ModelKey
from tenantml.inference.champion import ChampionResolver
from tenantml.errors import ModelNotFound, ModelUnavailable
from tenantml.inference.schema import FeatureSchema

__all__ = ["INLINE_ROWS", "Inference", "LoadedModel", "Loader", "predict_rows"]

log = logging.getLogger(__name__)

_SHOWN_NAME = 128

INLINE_ROWS = 64
"""Requests with at most this many rows are predicted on the event loop; larger ones in a thread."""


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model version in memory, with the schema its rows must follow."""

    tenant: str
    model: str
    version: str
    estimator: Any
    schema: FeatureSchema
    run_id: str | None = None


Loader = Callable[[str, str, str], LoadedModel]
"""``load(tenant, model, version)``: raises ModelNotFound if the version is gone."""


def _prediction_failed(loaded: LoadedModel, err: BaseException) -> ModelUnavailable:
    # The model's own failure: name its type only, its message may hold input values.
    return ModelUnavailable(
        f"model {loaded.model!r} version {loaded.version} failed to predict ({type(err).__name__}): "
        "its feature schema may not match the estimator; retrain or roll back"
    )


def _answer(loaded: LoadedModel, predictions: Any) -> dict[str, Any]:
    return {"predictions": np.asarray(predictions).tolist(), "model_version": loaded.version}


def predict_rows(loaded: LoadedModel, rows: object) -> dict[str, Any]:
    """Validate ``rows`` against the schema and predict; the response body of ``POST /predict``."""
    matrix = np.asarray(loaded.schema.matrix(rows), dtype=np.float64)
    try:
        predictions = loaded.estimator.predict(matrix)
    except Exception as err:  # noqa: BLE001 - the model's own failure, whatever it is
        raise _prediction_failed(loaded, err) from None
    return _answer(loaded, predictions)


class Inference:
    def __init__(self, resolver: ChampionResolver, cache: ModelCache[ModelKey, LoadedModel], load: Loader) -> None:
        self.resolver = resolver
        self.cache = cache
        self._load = load
        self._refreshing: set[tuple[str, str]] = set()
        self.batcher = MicroBatcher()
        self._background: set[asyncio.Future[Any]] = set()

    # -- blocking ------------------------------------------------------------------------
    def model_for(self, tenant: str, model: str) -> LoadedModel:
        _check_name(model)
        version = self._lookup(tenant, model, blocking=True)
        if version is None:
            raise ModelNotFound(model)
        return self.cache.get_or_load((tenant, model, version), lambda: self._load(tenant, model, version))

    def predict(self, tenant: str, model: str, rows: object) -> dict[str, Any]:
        return predict_rows(self.model_for(tenant, model), rows)

    # -- async (the HTTP service) --------------------------------------------------------
    async def model_for_async(self, tenant: str, model: str) -> LoadedModel:
        _check_name(model)
        seen = self.resolver.current(tenant, model)
        if seen is None:
            version = await asyncio.to_thread(self._lookup, tenant, model, True)
        else:
            version = seen.version
            if not seen.fresh:
                self._refresh_in_background(tenant, model)
        if version is None:
            raise ModelNotFound(model)
        key = (tenant, model, version)
        loaded = self.cache.get(key)
        if loaded is None:
            loaded = await asyncio.to_thread(self.cache.get_or_load, key, lambda: self._load(tenant, model, version))
        return loaded

    async def predict_async(self, tenant: str, model: str, rows: object) -> dict[str, Any]:
        """Small requests: checked and predicted on the event loop, micro-batched with concurrent ones."""
        loaded = await self.model_for_async(tenant, model)
        if isinstance(rows, list) and len(rows) > INLINE_ROWS:
            return await asyncio.to_thread(predict_rows, loaded, rows)
        matrix = np.asarray(loaded.schema.matrix(rows), dtype=np.float64)
        try:
            predictions = await self.batcher.predict(loaded, loaded.estimator.predict, matrix)
        except Exception as err:  # noqa: BLE001 - the model's own failure, whatever it is
            raise _prediction_failed(loaded, err) from None
        return _answer(loaded, predictions)

    async def drain(self) -> None:
        """Wait for background refreshes (used at shutdown and by tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- internals -----------------------------------------------------------------------
    def _lookup(self, tenant: str, model: str, blocking: bool) -> str | None:
        try:
            return self.resolver.resolve(tenant, model) if blocking else self.resolver.refresh(tenant, model)
        except TenantmlError:
            raise
        except Exception as err:
            raise ModelUnavailable(
                f"the model registry cannot be reached to find the champion of {model!r} "
                f"({type(err).__name__}): retry shortly"
            ) from err

    def _refresh_in_background(self, tenant: str, model: str) -> None:
        key = (tenant, model)
        if key in self._refreshing:
            return
        self._refreshing.add(key)
        future = asyncio.ensure_future(asyncio.to_thread(self._quiet_refresh, tenant, model))
        self._background.add(future)

        def done(finished: asyncio.Future[Any]) -> None:
            self._background.discard(finished)
            self._refreshing.discard(key)

        future.add_done_callback(done)

    def _quiet_refresh(self, tenant: str, model: str) -> None:
        try:
            self._lookup(tenant, model, blocking=False)
        except TenantmlError as err:  # keep serving the last answer; the next request tries again
            log.warning("champion refresh of %s.%s failed, serving the last known version: %s", tenant, model, err)


def _check_name(model: object) -> None:
    if not isinstance(model, str):
        raise ModelNotFound(str(model)[:_SHOWN_NAME])
    try:
        check_model_name(model)
    except InvalidRequest:
        raise ModelNotFound(model[:_SHOWN_NAME]) from None
