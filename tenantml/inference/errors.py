"""What can go wrong answering an inference request, and the HTTP status each maps to at the edge.

    TenantmlError
    ├── Unauthorized              401  no ``Authorization: Bearer <key>``, or a key no tenant has
    ├── InvalidRequest
    │   ├── MalformedBody         400  the body is not JSON
    │   ├── PayloadTooLarge       413  the body is over ``serving.max_body_bytes``
    │   └── InvalidPayload        422  a field of the body (or of a row) is missing, extra or mistyped
    ├── NotFound
    │   └── ModelNotFound         404  unknown model, or another tenant's: the same answer for both
    └── PlatformError
        └── ModelUnavailable      503  the registry cannot be reached, or the model cannot be loaded

Messages name the field and the type that was wrong, never the value a tenant sent, so that an
error that reaches a log leaks no input.
"""

from __future__ import annotations

from tenantml.errors import InvalidRequest, NotFound, PlatformError, TenantmlError

__all__ = [
    "InvalidPayload",
    "MalformedBody",
    "ModelNotFound",
    "ModelUnavailable",
    "PayloadTooLarge",
    "Unauthorized",
    "http_status",
]


class Unauthorized(TenantmlError):
    def __init__(self) -> None:
        super().__init__("missing or unknown API key: send the header 'Authorization: Bearer <tenant API key>'")


class MalformedBody(InvalidRequest):
    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the body is not valid JSON ({reason}): send a JSON object "
            '{"model": "<model>", "rows": [{"<feature>": <value>, ...}]}'
        )


class PayloadTooLarge(InvalidRequest):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is over the limit of {limit} bytes: send fewer rows per request")
        self.limit = limit


class InvalidPayload(InvalidRequest):
    """A field of the request is wrong; ``field`` names it (``rows[3].age``, ``model``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class ModelNotFound(NotFound):
    def __init__(self, model: str) -> None:
        super().__init__(
            f"model {model!r} not found: check its name, or train it and wait until a version is promoted"
        )
        self.model = model


class ModelUnavailable(PlatformError):
    """The model exists (or may exist) but cannot be served right now; retrying later may work."""


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
