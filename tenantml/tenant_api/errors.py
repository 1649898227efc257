"""The tenant API's error answers: each error type's HTTP status and stable ``code``.

The statuses are the inference service's (:func:`tenantml.inference.statuses.http_status`) with
three refinements that only this surface has: 409 for a request that conflicts with an object's
current state (already training, queue full, already ended, dataset in use), 404 for an unknown
dataset (a path parameter here, never a body field), and 401 for a key whose tenant is gone.
Another tenant's object answers exactly as an unknown one. Messages never show the server's
file system: a tenant's storage prefix is cut out of them.
"""

from __future__ import annotations

from typing import Any

from tenantml.errors import (
    AlreadyEnded,
    AlreadyTraining,
    Conflict,
    DatasetInUse,
    DatasetNotFound,
    DatasetOutsideTenant,
    InvalidDataset,
    InvalidParameter,
    InvalidPayload,
    InvalidRequest,
    MalformedBody,
    ModelNotFound,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    PlatformError,
    QuotaExceeded,
    Unauthorized,
    UnknownAlgorithm,
    UnknownTenant,
)

__all__ = ["CODES", "REFINED", "error_answer"]

CODES: tuple[tuple[type[BaseException], int, str], ...] = (
    (Unauthorized, 401, "unauthorized"),
    (UnknownTenant, 401, "unauthorized"),
    (MalformedBody, 400, "malformed_body"),
    (PayloadTooLarge, 413, "payload_too_large"),
    (InvalidPayload, 422, "invalid_payload"),
    (ModelNotFound, 404, "model_not_found"),
    (DatasetNotFound, 404, "dataset_not_found"),
    (NotFound, 404, "not_found"),
    (AlreadyTraining, 409, "already_training"),
    (QuotaExceeded, 409, "quota_exceeded"),
    (AlreadyEnded, 409, "already_ended"),
    (DatasetInUse, 409, "dataset_in_use"),
    (Conflict, 409, "conflict"),
    (DatasetOutsideTenant, 422, "dataset_outside_tenant"),
    (UnknownAlgorithm, 422, "unknown_algorithm"),
    (InvalidParameter, 422, "invalid_parameter"),
    (InvalidDataset, 422, "invalid_dataset"),
    (InvalidRequest, 422, "invalid_request"),
    (ModelUnavailable, 503, "model_unavailable"),
    (PlatformError, 503, "unavailable"),
)
"""Most specific first; anything else is a 500 ``internal`` whose message says nothing of it."""

REFINED = (UnknownTenant, DatasetNotFound, AlreadyTraining, QuotaExceeded, Conflict)
"""The types whose status differs from the inference service's map (see the module's docstring)."""


def error_answer(error: BaseException, hidden: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """(status, body) of an error; ``hidden`` maps text to cut out of messages to its replacement."""
    for kind, status, code in CODES:
        if isinstance(error, kind):
            message = str(error)
            for text, replacement in (hidden or {}).items():
                message = message.replace(text, replacement)
            body: dict[str, Any] = {"code": code, "message": message}
            if isinstance(error, InvalidPayload):
                body["field"] = error.field
            return status, body
    return 500, {"code": "internal", "message": "the tenant API failed on this request: the operator's logs say why"}
