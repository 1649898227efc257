"""The training requests seen from outside: list, show, move, cancel, and wait for one to end.

A tenant sees its own requests only: ``tenant`` scopes every read (None: an operator, all of them),
and a request of another tenant is not found, the same answer as for one that does not exist.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from tenantml.domain.request import AttemptEnd, RequestStatus, TrainingRequest
from tenantml.errors import AlreadyEnded, NotFound, TenantmlError, did_you_mean
from tenantml.ports import RequestFinisher, RequestStore
from tenantml.services.history import attempt_rows, describe
from tenantml.services.supervisor import LEASE as SUPERVISOR_LEASE

__all__ = ["cancel_request", "list_requests", "move_request", "request_view", "show_request", "supervisor_silence",
           "wait_for_request"]

POLL_S = 0.5


def request_view(request: TrainingRequest) -> dict[str, Any]:
    """A request as plain values: its status, where it is, its attempts and its model version."""
    return {
        "request_id": request.id,
        "tenant": request.tenant,
        "model": request.model,
        "algorithm": request.spec.algorithm,
        "status": request.status.value,
        "state": describe(request),
        "reason": request.reason,
        "step": request.step,
        "total_steps": request.total_steps,
        "epoch": request.epoch,
        "worker_uuid": request.worker_uuid,
        "worker_class": request.worker_class.value,
        "checkpoint_step": request.checkpoint.step if request.checkpoint else None,
        "model_version": request.model_version,
        "metrics": request.metrics,
        "mlflow_run_id": request.mlflow_run_id,
        "created_at": request.created_at,
        "finished_at": request.finished_at,
        "finalized_at": request.finalized_at,
        "attempts": attempt_rows(request),
    }


def supervisor_silence(store: RequestStore, now: datetime | None = None, stale_after_s: float = 15.0,
                       holder: str | None = None) -> str | None:
    """Why no training supervisor (other than ``holder``) looks after the queue now, or None when one
    has ticked lately."""
    held = store.lease_holder(SUPERVISOR_LEASE)
    if held is None:
        return "no training supervisor has run on this database: start the platform with `tenantml up`"
    if held[0] == holder:
        return "this supervisor holds the lease already"
    holder, at = held
    silent = ((now or datetime.now(UTC)) - at).total_seconds()
    if silent > stale_after_s:
        return f"the training supervisor ({holder}) has been silent for {silent:.0f} s: is `tenantml up` running?"
    return None


def list_requests(store: RequestStore, tenant: str | None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest requests first, as :func:`request_view` shows them."""
    return [request_view(request) for request in store.list_requests(tenant=tenant, limit=limit)]


RECENT_IDS = 500
"""Newest request ids a "did you mean" looks through."""


def _request(store: RequestStore, request_id: str, tenant: str | None) -> TrainingRequest:
    """The request, or NotFound naming the closest of the caller's own recent ids (a tenant: its own only)."""
    try:
        return store.get_request(request_id, tenant=tenant)
    except NotFound as err:
        recent = [request.id for request in store.list_requests(tenant=tenant, limit=RECENT_IDS)]
        hint = did_you_mean(request_id, recent)
        if not hint:
            raise
        raise NotFound(f"{err}{hint}: `tenantml runs` lists the requests") from None


def show_request(store: RequestStore, request_id: str, tenant: str | None) -> dict[str, Any]:
    return request_view(_request(store, request_id, tenant))


def move_request(store: RequestStore, request_id: str, tenant: str | None, now: datetime) -> None:
    """Ask the supervisor to move the request to a new worker, resuming from its last checkpoint."""
    _request(store, request_id, tenant)  # NotFound for another tenant's
    store.request_move(request_id, now)


class _Cancelling(RequestStore, RequestFinisher, Protocol):
    pass


def cancel_request(store: _Cancelling, request_id: str, tenant: str | None, now: datetime,
                   by: str = "an operator") -> None:
    """End the request as cancelled; the epoch moves on, so its worker's next write fences it off."""
    request = _request(store, request_id, tenant)
    if request.status.is_terminal:
        raise AlreadyEnded(request_id, request.status.value)
    store.finish(request.id, request.epoch, RequestStatus.CANCELLED, now, f"cancelled by {by}",
                 AttemptEnd.CANCELLED)


def wait_for_request(
    store: RequestStore,
    request_id: str,
    timeout_s: float,
    on_update: Callable[[TrainingRequest], None],
    poll_s: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TrainingRequest:
    """Poll until the request has ended, telling ``on_update`` what each poll saw; returns the ended request."""
    deadline = clock() + timeout_s
    while True:
        request = store.get_request(request_id)
        on_update(request)
        if request.status.is_terminal:
            return request
        if clock() > deadline:
            raise TenantmlError(f"request {request_id} did not finish within {timeout_s:.0f} s; the training "
                                f"goes on: follow it with `tenantml run show {request_id}`")
        sleep(poll_s)
