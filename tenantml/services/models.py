"""A tenant's registered models: which version serves (the ``champion``), promotion and rollback."""

from __future__ import annotations

from typing import Any

from tenantml.domain.names import check_model_name, registered_model_name
from tenantml.errors import InvalidRequest
from tenantml.ports import ModelRegistry

__all__ = ["model_views", "promote", "rollback"]


def promote(registry: ModelRegistry, tenant: str, model: str, version: str) -> dict[str, Any]:
    """Make ``version`` the champion; the inference service serves it within seconds."""
    check_model_name(model)
    if not version.isdigit():
        raise InvalidRequest(f"invalid version {version!r}: give a version number, as `tenantml model list` shows")
    registry.version_metrics(tenant, model, version)  # NotFound if there is no such version
    previous = registry.champion(tenant, model)
    if previous != version:
        registry.set_champion(tenant, model, version)
    return {"tenant": tenant, "model": model, "champion": version, "previous_champion": previous}


def rollback(registry: ModelRegistry, tenant: str, model: str) -> dict[str, Any]:
    """Give the champion back to the version that held it before the last promotion."""
    check_model_name(model)
    rolled_from, rolled_to = registry.rollback_champion(tenant, model)
    return {"tenant": tenant, "model": model, "champion": rolled_to, "rolled_back_from": rolled_from}


def model_views(registry: ModelRegistry, tenant: str) -> list[dict[str, Any]]:
    """The tenant's registered models: champion, previous champion, versions, champion metrics."""
    return [
        {
            "model": model,
            "registered_name": registered_model_name(tenant, model),
            "champion": champion,
            "previous_champion": previous,
            "versions": registry.list_versions(tenant, model),
            "champion_metrics": {} if champion is None else registry.version_metrics(tenant, model, champion),
        }
        for model, champion, previous in registry.list_models(tenant)
    ]
