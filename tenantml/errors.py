"""Errors raised by tenantml, as one small tree.

    TenantmlError
    ├── InvalidRequest            the caller asked for something that can never work (exit 2, HTTP 4xx)
    │   ├── UnknownTenant
    │   ├── UnknownAlgorithm
    │   ├── InvalidParameter
    │   ├── DatasetNotFound
    │   ├── DatasetOutsideTenant
    │   └── InvalidDataset        missing target column, non-numeric features, empty data
    ├── NotFound                  a request, model or version that does not exist
    ├── StaleEpoch                a fenced worker tried to write: it has been replaced
    ├── ResourceExhausted         the worker ran out of memory or time: retry on a larger class
    └── PlatformError             the embedded platform cannot start or is not running
        ├── PortInUse
        └── HomeNotWritable

Every message says what was wrong, with the offending value, and what to do instead.
Third-party errors are translated at the edge: ``raise InvalidDataset(...) from err``.
"""

from __future__ import annotations

__all__ = [
    "DatasetNotFound",
    "DatasetOutsideTenant",
    "HomeNotWritable",
    "InvalidDataset",
    "InvalidParameter",
    "InvalidRequest",
    "NotFound",
    "PlatformError",
    "PortInUse",
    "ResourceExhausted",
    "StaleEpoch",
    "TenantmlError",
    "UnknownAlgorithm",
    "UnknownTenant",
]


class TenantmlError(Exception):
    """Base of every error tenantml raises on purpose."""


class InvalidRequest(TenantmlError):
    """The request can never succeed as written; retrying it is pointless (a user error)."""


class UnknownTenant(InvalidRequest):
    def __init__(self, tenant: str) -> None:
        super().__init__(f"unknown tenant {tenant!r}: create it first with `tenantml tenant create {tenant}`")
        self.tenant = tenant


class UnknownAlgorithm(InvalidRequest):
    def __init__(self, algorithm: str, known: list[str]) -> None:
        super().__init__(f"unknown algorithm {algorithm!r}: choose one of {', '.join(sorted(known))}")
        self.algorithm = algorithm


class InvalidParameter(InvalidRequest):
    """A training parameter has a wrong name or value."""


class DatasetNotFound(InvalidRequest):
    def __init__(self, dataset: str) -> None:
        super().__init__(
            f"dataset {dataset!r} does not exist: add it with `tenantml dataset add --tenant T FILE`"
        )
        self.dataset = dataset


class DatasetOutsideTenant(InvalidRequest):
    def __init__(self, dataset: str, prefix: str) -> None:
        super().__init__(f"dataset {dataset!r} is outside the tenant's storage {prefix!r}: use a path inside it")
        self.dataset = dataset


class InvalidDataset(InvalidRequest):
    """The dataset cannot be trained on: missing target column, non-numeric features, no rows."""


class NotFound(TenantmlError):
    """A request, tenant model or model version that does not exist (or is another tenant's)."""


class StaleEpoch(TenantmlError):
    """A write carried a lease epoch that is no longer current: the writer has been replaced."""

    def __init__(self, request_id: str, epoch: int) -> None:
        super().__init__(
            f"request {request_id}: epoch {epoch} has been fenced off; this worker was replaced and must stop"
        )
        self.request_id = request_id
        self.epoch = epoch


class ResourceExhausted(TenantmlError):
    """The attempt ran out of a resource of its worker class; the next attempt escalates."""


class PlatformError(TenantmlError):
    """The embedded platform cannot start, or is not running."""


class PortInUse(PlatformError):
    def __init__(self, what: str, port: int) -> None:
        super().__init__(
            f"port {port} for the {what} is already in use: free it, or set another port (or 0 for a free one)"
        )
        self.port = port


class HomeNotWritable(PlatformError):
    def __init__(self, home: str, reason: str) -> None:
        super().__init__(f"TENANTML_HOME {home!r} cannot be written ({reason}): choose a writable folder")
        self.home = home
