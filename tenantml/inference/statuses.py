"""The HTTP status each error maps to at the inference edge (the errors are in :mod:`tenantml.errors`)."""

from __future__ import annotations

from tenantml.errors import (
    InvalidPayload,
    InvalidRequest,
    MalformedBody,
    ModelNotFound,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    PlatformError,
    Unauthorized,
)

__all__ = ["http_status"]

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (Unauthorized, 401),
    (MalformedBody, 400),
    (PayloadTooLarge, 413),
    (InvalidPayload, 422),
    (ModelNotFound, 404),
    (NotFound, 404),
    (InvalidRequest, 422),
    (ModelUnavailable, 503),
    (PlatformError, 503),
)


def http_status(error: BaseException) -> int:
    """The HTTP status of an error; anything we did not raise on purpose is a 500."""
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500
