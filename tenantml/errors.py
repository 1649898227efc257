"""Errors raised by tenantml, as one small tree.

    TenantmlError
    ├── InvalidRequest            the caller asked for something that can never work (exit 2, HTTP 4xx)
    │   ├── UnknownTenant
    │   ├── TenantExists
    │   ├── AlreadyTraining       the tenant's model is training now (admission answers with that request)
    │   ├── QuotaExceeded         the tenant has as many requests waiting as its quota allows
    │   ├── Conflict              HTTP 409: the object's state forbids it now (it may not later)
    │   │   ├── AlreadyEnded      cancel a request that has ended
    │   │   └── DatasetInUse      delete a dataset a waiting or running training reads
    │   ├── UnknownAlgorithm
    │   ├── InvalidParameter
    │   ├── DatasetNotFound
    │   ├── DatasetOutsideTenant
    │   ├── InvalidDataset        missing target column, non-numeric features, empty data
    │   ├── MalformedBody         HTTP 400: the body is not JSON
    │   ├── PayloadTooLarge       HTTP 413: the body is over ``serving.max_body_bytes``
    │   └── InvalidPayload        HTTP 422: a field of the body (or of a row) is missing, extra or mistyped
    ├── InvalidSetting            a TENANTML_* variable cannot be used (exit 1: the set-up, not the request)
    ├── Unauthorized              HTTP 401: no ``Authorization: Bearer <key>``, or a key no tenant has
    │   └── TenantDisabled        the key's tenant is disabled by the operator
    ├── NotFound                  a request, model or version that does not exist (or is another tenant's)
    │   └── ModelNotFound         HTTP 404: unknown model, or another tenant's: the same answer for both
    ├── StaleEpoch                a fenced worker tried to write: it has been replaced
    ├── CorruptCheckpoint         a checkpoint's bytes do not match the digest its pointer recorded
    ├── ResourceExhausted         the worker ran out of memory or time: retry on a larger class
    └── PlatformError             a part of the platform cannot start, is not running or cannot be reached
        ├── PortInUse
        ├── HomeNotWritable
        ├── StartupCheckFailed    a setting `tenantml up` needs (a database URL, a bucket) is wrong: nothing started
        ├── ServiceUnavailable    the metadata database, MLflow or Prefect did not answer
        └── ModelUnavailable      HTTP 503: the registry cannot be reached, or the model cannot be loaded
            └── UntrustedModel    the version's files lack the platform's digest, do not match it, or hold
                                  types the loader does not trust: refused before anything is loaded

Every message says what was wrong, with the offending value, and what to do instead. Messages of
the inference errors name the field and the type that was wrong, never the value a tenant sent.
Third-party errors are translated at the edge, in the adapters: ``raise ServiceUnavailable(...) from err``.
A name that is not known says which known one is close (:func:`did_you_mean`), among the names the
caller may see only: a tenant's key never hears of another tenant's names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AlreadyEnded",
    "AlreadyTraining",
    "Conflict",
    "CorruptCheckpoint",
    "DatasetInUse",
    "DatasetNotFound",
    "DatasetOutsideTenant",
    "HomeNotWritable",
    "InvalidDataset",
    "InvalidParameter",
    "InvalidPayload",
    "InvalidRequest",
    "InvalidSetting",
    "MalformedBody",
    "ModelNotFound",
    "ModelUnavailable",
    "NotFound",
    "PayloadTooLarge",
    "PlatformError",
    "PortInUse",
    "QuotaExceeded",
    "ResourceExhausted",
    "ServiceUnavailable",
    "StaleEpoch",
    "StartupCheckFailed",
    "TenantDisabled",
    "TenantExists",
    "TenantmlError",
    "Unauthorized",
    "UnknownAlgorithm",
    "UnknownTenant",
    "UntrustedModel",
]


def did_you_mean(value: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to a mistyped ``value`` (or the only one it begins,
    as a request id's first characters do), else ``""``."""
    names = sorted({name for name in known if name != value})
    starting = [name for name in names if value and name.startswith(value)]
    close = starting if len(starting) == 1 else difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class TenantmlError(Exception):
    """Base of every error tenantml raises on purpose."""


class InvalidRequest(TenantmlError):
    """The request can never succeed as written; retrying it is pointless (a user error)."""


class UnknownTenant(InvalidRequest):
    def __init__(self, tenant: str, known: Iterable[str] = ()) -> None:
        """``known``: the tenants the caller may see (an operator: all), for a "did you mean"."""
        super().__init__(f"unknown tenant {tenant!r}{did_you_mean(tenant, known)}: create it first with "
                         f"`tenantml tenant create {tenant}`")
        self.tenant = tenant


class TenantExists(InvalidRequest):
    def __init__(self, tenant: str) -> None:
        super().__init__(f"tenant {tenant!r} already exists: choose another name")
        self.tenant = tenant


class AlreadyTraining(InvalidRequest):
    """Another request of the same tenant and model is active; at most one may be."""

    def __init__(self, tenant: str, model: str) -> None:
        super().__init__(f"{tenant}/{model} is already training: wait for it, or cancel it first")
        self.tenant, self.model = tenant, model


class QuotaExceeded(InvalidRequest):
    def __init__(self, tenant: str, waiting: int, limit: int) -> None:
        super().__init__(
            f"tenant {tenant!r} has {waiting} training requests waiting for a worker and may have at most {limit}: "
            f"submit again once one has started, or ask the operator to raise the limit "
            f"(`tenantml tenant set-quota {tenant} --max-queued N`)"
        )
        self.tenant, self.waiting, self.limit = tenant, waiting, limit


class Conflict(InvalidRequest):
    """The object exists but its current state forbids the change (HTTP 409)."""


class AlreadyEnded(Conflict):
    def __init__(self, request_id: str, status: str) -> None:
        super().__init__(f"request {request_id} has already ended ({status})")
        self.request_id, self.status = request_id, status


class DatasetInUse(Conflict):
    def __init__(self, dataset: str, request_id: str) -> None:
        super().__init__(
            f"dataset {dataset!r} is read by training request {request_id}, which has not ended: "
            "wait for it or cancel it, then delete the dataset"
        )
        self.dataset, self.request_id = dataset, request_id


class UnknownAlgorithm(InvalidRequest):
    def __init__(self, algorithm: str, known: list[str]) -> None:
        super().__init__(f"unknown algorithm {algorithm!r}{did_you_mean(algorithm, known)}: choose one of "
                         f"{', '.join(sorted(known))} (`tenantml algorithms` lists their parameters)")
        self.algorithm = algorithm


class InvalidParameter(InvalidRequest):
    """A training parameter has a wrong name or value."""


class InvalidSetting(TenantmlError):
    """A ``TENANTML_*`` variable has a value that cannot be used."""


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


class MalformedBody(InvalidRequest):
    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the body is not valid JSON ({reason}): send a JSON object "
            '{"model": "<model>", "rows": [{"<feature>": <value>, ...}]}'
        )


class PayloadTooLarge(InvalidRequest):
    def __init__(self, limit: int, what: str = "rows") -> None:
        advice = "send fewer rows per request" if what == "rows" else f"sample or split the {what}"
        super().__init__(f"the body is over the limit of {limit} bytes: {advice}")
        self.limit = limit


class InvalidPayload(InvalidRequest):
    """A field of the request is wrong; ``field`` names it (``rows[3].age``, ``model``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class Unauthorized(TenantmlError):
    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or "missing or unknown API key: send the header 'Authorization: Bearer <tenant API key>'")


class TenantDisabled(Unauthorized):
    def __init__(self, tenant: str) -> None:
        super().__init__(f"tenant {tenant!r} is disabled by the operator: its keys are refused until the operator "
                         "runs `tenantml tenant enable`")
        self.tenant = tenant


class NotFound(TenantmlError):
    """A request, tenant model or model version that does not exist (or is another tenant's)."""


class ModelNotFound(NotFound):
    def __init__(self, model: str) -> None:
        super().__init__(
            f"model {model!r} not found: check its name, or train it and wait until a version is promoted"
        )
        self.model = model


class StaleEpoch(TenantmlError):
    """A write carried a lease epoch that is no longer current: the writer has been replaced."""

    def __init__(self, request_id: str, epoch: int) -> None:
        super().__init__(
            f"request {request_id}: epoch {epoch} has been fenced off; this worker was replaced and must stop"
        )
        self.request_id = request_id
        self.epoch = epoch


class CorruptCheckpoint(TenantmlError):
    """A downloaded checkpoint does not match its recorded SHA-256; it is never unpickled."""

    def __init__(self, uri: str, found: str, expected: str) -> None:
        super().__init__(f"checkpoint {uri} is corrupt: sha256 {found} != {expected}")
        self.uri = uri


class ResourceExhausted(TenantmlError):
    """The attempt ran out of a resource of its worker class; the next attempt escalates."""


class PlatformError(TenantmlError):
    """A part of the platform cannot start, is not running, or cannot be reached."""


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


class StartupCheckFailed(PlatformError):
    """A start-up check failed: each problem names its setting; no process was started."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("cannot start, nothing was started: " + "; ".join(problems))
        self.problems = problems


class ServiceUnavailable(PlatformError):
    """The metadata database, the MLflow server or the Prefect API did not answer as it should."""


class ModelUnavailable(PlatformError):
    """The model exists (or may exist) but cannot be served right now; retrying later may work."""


class UntrustedModel(ModelUnavailable):
    """A version the platform will not load: no digest recorded at registration, files that do not
    match it, or a model file naming types outside the trusted list. Nothing of it was deserialized."""

    def __init__(self, model: str, version: str, problem: str) -> None:
        super().__init__(
            f"model {model!r} version {version} is refused: {problem}; "
            "retrain it with tenantml, or roll the champion back to a version tenantml registered"
        )
        self.model, self.version = model, version
