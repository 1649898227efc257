"""A tenant's registered models: which version serves (the ``champion``), promotion and rollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tenantml.domain.names import check_model_name, registered_model_name
from tenantml.errors import InvalidRequest, NotFound, did_you_mean
from tenantml.ports import ModelRegistry

_T = TypeVar("_T")

__all__ = ["model_views", "promote", "rollback"]


def promote(registry: ModelRegistry, tenant: str, model: str, version: str) -> dict[str, Any]:
    """Make ``version`` the champion; the inference service serves it within seconds."""
    check_model_name(model)
    if not version.isdigit():
        raise InvalidRequest(f"invalid version {version!r}: give a version number, as `tenantml model list` shows")
    _known(registry, tenant, model, lambda: registry.version_metrics(tenant, model, version))  # NotFound: none
    previous = registry.champion(tenant, model)
    if previous != version:
        registry.set_champion(tenant, model, version)
    return {"tenant": tenant, "model": model, "champion": version, "previous_champion": previous}


def rollback(registry: ModelRegistry, tenant: str, model: str) -> dict[str, Any]:
    """Give the champion back to the version that held it before the last promotion."""
    check_model_name(model)
    rolled_from, rolled_to = _known(registry, tenant, model, lambda: registry.rollback_champion(tenant, model))
    return {"tenant": tenant, "model": model, "champion": rolled_to, "rolled_back_from": rolled_from}


def _known(registry: ModelRegistry, tenant: str, model: str, call: Callable[[], _T]) -> _T:
    """``call()``; a NotFound for a model the tenant does not have names the closest of the tenant's models."""
    try:
        return call()
    except NotFound:
        names = [name for name, _, _ in registry.list_models(tenant)]
        hint = "" if model in names else did_you_mean(model, names)
        if not hint:
            raise  # the model exists (its version does not, and the error says so), or nothing is close
        raise NotFound(f"no model {registered_model_name(tenant, model)}{hint}: `tenantml model list` shows "
                       "the tenant's models") from None


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
