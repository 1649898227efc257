"""Names that tenants choose. They end up in registry names, queue names and paths, so they are strict."""

from __future__ import annotations

import re

from tenantml.errors import InvalidRequest

__all__ = ["check_model_name", "check_tenant_name", "registered_model_name"]

_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def check_tenant_name(name: str) -> str:
    if not _TENANT.fullmatch(name):
        raise InvalidRequest(
            f"invalid tenant name {name!r}: use 1-63 lowercase letters, digits and dashes, starting with a letter or digit"
        )
    return name


def check_model_name(name: str) -> str:
    if not _MODEL.fullmatch(name):
        raise InvalidRequest(
            f"invalid model name {name!r}: use 1-128 letters, digits, '_' and '-', starting with a letter or digit"
        )
    return name


def registered_model_name(tenant: str, model: str) -> str:
    """The MLflow registry name of a tenant's model: ``<tenant>.<model>``."""
    return f"{tenant}.{model}"
