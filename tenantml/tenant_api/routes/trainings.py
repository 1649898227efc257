"""``/v1/trainings``: submit (admission as `tenantml train`), list, show with attempts, cancel, follow.

Following is server-sent events: ``GET /v1/trainings/<id>/events`` sends an ``progress`` event
whenever the status, step or attempt changes, and an ``end`` event with the whole request once it
has ended (and been finalized, so the model version is known), then closes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from tenantml.services import trainings
from tenantml.tenant_api.app import Tenant, backend

__all__ = ["Submission", "router"]

router = APIRouter(tags=["trainings"])

FOLLOW_LIMIT_S = 3600.0
KEEPALIVE_S = 15.0


class Submission(BaseModel):
    """The parameters of `tenantml train`, but the tenant: that is the key's."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The model's name; each training registers a version of it")
    dataset: str = Field(description="A dataset of the tenant, as GET /v1/datasets names it")
    target: str = Field(description="The column to predict")
    algorithm: str = Field(description="sgd_classifier, sgd_regressor, mlp_classifier, ...")
    params: dict[str, str | int | float | bool | None] = Field(default_factory=dict,
                                                               description="Algorithm parameters")
    force: bool = Field(default=False, description="Train even if data and parameters are unchanged")
    promotion: str = Field(default="always", description="'always', or 'if-better[:metric]'")
    idempotency_key: str | None = Field(default=None, description="Submitting the same key again submits nothing")


@router.post("/trainings", status_code=202, summary="Submit a training request")
def submit(body: Submission, request: Request, tenant: Tenant) -> dict[str, Any]:
    from tenantml.services.admission import TrainingOrder, submit_training  # scikit-learn, on first use

    state = backend(request)
    order = TrainingOrder(tenant=tenant, model=body.model, dataset=body.dataset, target=body.target,
                          algorithm=body.algorithm, params=dict(body.params), force=body.force,
                          idempotency_key=body.idempotency_key, promotion=body.promotion)
    admission = submit_training(state.store, state.storage, order, limits=state.limits)
    return {"request_id": admission.request_id, "decision": admission.decision.value, "message": admission.message}


@router.get("/trainings", summary="The tenant's training requests, newest first")
def list_trainings(request: Request, tenant: Tenant,
                   limit: Annotated[int, Query(ge=1, le=500, description="At most this many")] = 50) -> dict[str, Any]:
    return {"trainings": trainings.list_requests(backend(request).store, tenant, limit)}


@router.get("/trainings/{request_id}", summary="A training request with its attempt history")
def show(request_id: str, request: Request, tenant: Tenant) -> dict[str, Any]:
    return trainings.show_request(backend(request).store, request_id, tenant)


@router.post("/trainings/{request_id}/cancel", summary="Cancel a training that has not ended")
def cancel(request_id: str, request: Request, tenant: Tenant) -> dict[str, Any]:
    store = backend(request).store
    trainings.cancel_request(store, request_id, tenant, datetime.now(UTC), by="the tenant")
    return trainings.show_request(store, request_id, tenant)


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


@router.get(
    "/trainings/{request_id}/events", summary="Follow a training: server-sent events until it has ended",
    responses={200: {"content": {"text/event-stream": {}}, "description": "`progress` events, then one `end`"}},
)
def follow(request_id: str, request: Request, tenant: Tenant,
           timeout_s: Annotated[float, Query(gt=0, le=FOLLOW_LIMIT_S)] = FOLLOW_LIMIT_S) -> StreamingResponse:
    state = backend(request)
    first = trainings.show_request(state.store, request_id, tenant)  # 404 now, not in the stream

    async def events() -> AsyncIterator[str]:
        view, last, loop = first, None, asyncio.get_running_loop()
        deadline, quiet_since = loop.time() + timeout_s, loop.time()
        while True:
            seen = (view["status"], view["step"], len(view["attempts"]), view["model_version"])
            if view["finished_at"] is not None and (view["finalized_at"] or view["status"] != "completed"):
                yield _event("end", view)
                return
            if seen != last:
                yield _event("progress", {k: view[k] for k in ("request_id", "status", "step", "total_steps",
                                                             "model_version", "reason")} | {"attempt": seen[2]})
                last, quiet_since = seen, loop.time()
            elif loop.time() - quiet_since > KEEPALIVE_S:
                yield ": keep-alive\n\n"
                quiet_since = loop.time()
            if loop.time() > deadline:
                yield _event("timeout", {"request_id": request_id, "message": "still running: follow it again"})
                return
            await asyncio.sleep(state.follow_interval_s)
            if await request.is_disconnected():
                return
            view = await run_in_threadpool(trainings.show_request, state.store, request_id, tenant)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
