"""``/v1/models``: the tenant's registered models, each version's metrics, promote, roll back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tenantml.domain.names import check_model_name
from tenantml.errors import ModelNotFound
from tenantml.services import models
from tenantml.tenant_api.app import Tenant, backend

__all__ = ["Promotion", "router"]

router = APIRouter(tags=["models"])


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(description="The version to serve, as GET /v1/models/<model>/versions lists it")


@router.get("/models", summary="The tenant's models: champion, previous champion, versions, champion metrics")
def list_models(request: Request, tenant: Tenant) -> dict[str, Any]:
    return {"models": models.model_views(backend(request).registry(), tenant)}


@router.get("/models/{model}/versions", summary="Every version of a model with its metrics")
def versions(model: str, request: Request, tenant: Tenant) -> dict[str, Any]:
    registry = backend(request).registry()
    check_model_name(model)
    found = {name: champion for name, champion, _ in registry.list_models(tenant)}
    if model not in found:
        raise ModelNotFound(model)
    return {"model": model, "champion": found[model], "versions": [
        {"version": v, "champion": v == found[model], "metrics": registry.version_metrics(tenant, model, v)}
        for v in registry.list_versions(tenant, model)
    ]}


@router.post("/models/{model}/promote", summary="Make a version the champion (served within seconds)")
def promote(model: str, body: Promotion, request: Request, tenant: Tenant) -> dict[str, Any]:
    return models.promote(backend(request).registry(), tenant, model, body.version)


@router.post("/models/{model}/rollback", summary="Give the champion back to the version before the last promotion")
def rollback(model: str, request: Request, tenant: Tenant) -> dict[str, Any]:
    return models.rollback(backend(request).registry(), tenant, model)
