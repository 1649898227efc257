"""Micro-batching on the event loop: small requests for the same model version share one ``predict``.

A request adds its (already validated) matrix to the open batch of its model version; the batch
runs on the next turn of the event loop, so it holds exactly the requests that arrived together
and adds no waiting of its own: a lone request is predicted alone, immediately. With many
concurrent callers the per-call overhead of scikit-learn (input checks, about half of a one-row
request's CPU) is paid once per batch instead of once per request.

Batches never mix model versions, and each request gets back exactly its own rows' predictions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

__all__ = ["MAX_BATCH_ROWS", "MicroBatcher"]

MAX_BATCH_ROWS = 512
"""A batch closes at this many rows; later requests open the next one."""


class _Batch:
    def __init__(self) -> None:
        self.matrices: list[np.ndarray] = []
        self.futures: list[asyncio.Future[np.ndarray]] = []
        self.rows = 0


class MicroBatcher:
    def __init__(self, max_rows: int = MAX_BATCH_ROWS) -> None:
        self.max_rows = max_rows
        self._open: dict[Hashable, _Batch] = {}
        self.batches = 0
        self.requests = 0

    async def predict(self, key: Hashable, predict: Callable[[np.ndarray], Any], matrix: np.ndarray) -> np.ndarray:
        """``predict(matrix)`` for this request's rows, run together with the others waiting on ``key``."""
        loop = asyncio.get_running_loop()
        batch = self._open.get(key)
        if batch is None or batch.rows + len(matrix) > self.max_rows:
            batch = self._open[key] = _Batch()
            loop.call_soon(self._run, key, batch, predict)
        future: asyncio.Future[np.ndarray] = loop.create_future()
        batch.matrices.append(matrix)
        batch.futures.append(future)
        batch.rows += len(matrix)
        return await future

    def _run(self, key: Hashable, batch: _Batch, predict: Callable[[np.ndarray], Any]) -> None:
        if self._open.get(key) is batch:
            del self._open[key]
        self.batches += 1
        self.requests += len(batch.futures)
        matrix = batch.matrices[0] if len(batch.matrices) == 1 else np.concatenate(batch.matrices)
        try:
            predictions = np.asarray(predict(matrix))
            if len(predictions) != len(matrix):
                raise ValueError(f"{len(predictions)} predictions for {len(matrix)} rows")
        except Exception as err:  # noqa: BLE001 - every request of the batch gets the model's error
            for future in batch.futures:
                if not future.done():
                    future.set_exception(err)
            return
        start = 0
        for rows, future in zip(batch.matrices, batch.futures, strict=True):
            if not future.done():
                future.set_result(predictions[start : start + len(rows)])
            start += len(rows)
