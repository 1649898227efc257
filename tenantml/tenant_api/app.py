"""The tenant API's FastAPI application: who is calling, how errors answer, liveness and readiness.

Every route under ``/v1`` depends on :func:`Auth` (``Authorization: Bearer <tenant API key>``,
declared in the OpenAPI document as the ``TenantKey`` scheme): the tenant comes from the key, and
no route takes a tenant from its path, query or body. Routes are plain ``def`` functions: the
metadata store and the registry block, so FastAPI runs them on its thread pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from tenantml.errors import InvalidPayload, TenantmlError, Unauthorized
from tenantml.inference.keys import TenantKeys, bearer_token
from tenantml.ports import DatasetStorage, ModelRegistry, RequestFinisher, RequestStore, TenantDirectory
from tenantml.services.admission import SubmissionLimits
from tenantml.tenant_api.errors import error_answer

__all__ = ["Backend", "TenantApiStore", "Tenant", "create_app"]

log = logging.getLogger("tenantml.tenant_api")

TENANT_STATE = "tenant"


class TenantApiStore(TenantDirectory, RequestStore, RequestFinisher, Protocol):
    """What the tenant API reads and writes in the training metadata."""


@dataclass
class Backend:
    """What the routes work with, built once at the entrypoint (``serve``) or by a test."""

    store: TenantApiStore
    storage: DatasetStorage
    registry: Callable[[], ModelRegistry]  # MLflow is imported on the first model route, not at start-up
    keys: TenantKeys
    limits: SubmissionLimits = field(default_factory=SubmissionLimits)
    follow_interval_s: float = 0.5
    ready: Callable[[], bool] = lambda: True


_bearer = HTTPBearer(
    scheme_name="TenantKey", auto_error=False,
    description="The tenant's API key, as `tenantml tenant create` printed it: the tenant is the key's.",
)


def _tenant(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str:
    token = bearer_token(request.headers.get("authorization")) if credentials is not None else None
    if token is None:
        raise Unauthorized()
    tenant = backend(request).keys.tenant_for(token)
    if tenant is None:
        raise Unauthorized()
    setattr(request.state, TENANT_STATE, tenant)
    return tenant


Tenant = Annotated[str, Depends(_tenant)]
"""The calling tenant, from its key; a route that takes it is authenticated."""


def backend(request: Request) -> Backend:
    found: Backend = request.app.state.backend
    return found


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or unknown API key (`unauthorized`)"},
    404: {"description": "Unknown, or another tenant's: the same answer for both (`not_found`, `model_not_found`, "
                         "`dataset_not_found`)"},
    409: {"description": "The object's state forbids it now (`already_training`, `quota_exceeded`, "
                         "`already_ended`, `dataset_in_use`)"},
    413: {"description": "Body over the limit (`payload_too_large`)"},
    422: {"description": "A field or value that can never work, named in `message` (`invalid_payload`, "
                         "`invalid_request`, `unknown_algorithm`, `invalid_parameter`, `invalid_dataset`, "
                         "`dataset_outside_tenant`)"},
}


def _hidden(request: Request) -> dict[str, str]:
    """The server paths cut out of messages: the tenant's prefix (a name stays a name), then the root."""
    storage = backend(request).storage
    tenant = getattr(request.state, TENANT_STATE, None)
    hidden = {}
    if tenant is not None:
        hidden[f"{storage.prefix(tenant)}/"] = ""
        hidden[f" {str(storage.prefix(tenant))!r}"] = ""
        hidden[str(storage.prefix(tenant))] = "the tenant's storage"
    hidden[str(storage.prefix("x").parent)] = "<storage>"
    hidden["`tenantml dataset add --tenant T FILE`"] = "PUT /v1/datasets/<name>"
    return hidden


def _answer(request: Request, error: BaseException) -> JSONResponse:
    status, body = error_answer(error, _hidden(request))
    if status == 500:
        log.error("%s %s failed: %s", request.method, request.url.path, type(error).__name__)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path")]
    return ".".join(parts)[:64] or "body"


def _invalid(request: Request, error: Exception) -> JSONResponse:
    """Pydantic's errors, by field and problem: never the value sent (it may be a secret or a row)."""
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0]
    if first.get("type") == "json_invalid":
        return JSONResponse({"code": "malformed_body", "message": "the body is not valid JSON: send a JSON object"},
                            status_code=400)
    name = _field(tuple(first.get("loc", ())))
    if first.get("type") == "extra_forbidden":
        why = "the tenant comes from the API key" if name == "tenant" else "see /docs for the fields"
        problem = f"unexpected field: {why}"
    else:
        problem = str(first.get("msg", "is invalid"))
    return _answer(request, InvalidPayload(name, problem))


def _http(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    message = "no such route: see /docs" if error.status_code == 404 else str(error.detail)
    return JSONResponse({"code": code, "message": message}, status_code=error.status_code,
                        headers=getattr(error, "headers", None))


def create_app(state: Backend) -> FastAPI:
    from tenantml.tenant_api.routes import datasets, models, trainings

    app = FastAPI(
        title="tenantml tenant API",
        version="1",
        description="A tenant's datasets, trainings and models, by the tenant's API key. Errors are "
        '`{"code": "<stable code>", "message": "<what was wrong and what to do>"}`.',
    )
    app.state.backend = state
    app.add_exception_handler(TenantmlError, _answer)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _answer)

    @app.get("/livez", tags=["health"], summary="The process answers")
    def livez() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="The training metadata answers",
             responses={503: {"description": "Not ready"}})
    def readyz() -> JSONResponse:
        ok = state.ready()
        return JSONResponse({"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503)

    @app.get("/v1/tenant", tags=["tenant"], summary="The tenant of the key", responses=ERROR_RESPONSES)
    def whoami(tenant: Tenant) -> dict[str, str]:
        return {"tenant": tenant}

    for router in (datasets.router, trainings.router, models.router):
        app.include_router(router, prefix="/v1", responses=ERROR_RESPONSES)
    return app
