"""Which tenant a caller acts as, and the operator's tenant and dataset commands.

The CLI is an operator surface: without an API key it may name any tenant. With a tenant's key
(``TENANTML_API_KEY``) it acts as that tenant only, and naming another one answers as if that
tenant did not exist, so a key never learns which other tenants there are.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tenantml.domain.names import check_tenant_name
from tenantml.domain.tenant import Quota, check_quota_value, hash_api_key, new_api_key
from tenantml.errors import InvalidRequest, NotFound, UnknownTenant
from tenantml.ports import DatasetStorage, TenantDirectory

__all__ = [
    "acting_tenant",
    "add_dataset",
    "create_tenant",
    "existing",
    "list_tenants",
    "quotas",
    "required_tenant",
    "set_queue_limit",
    "set_running_limit",
    "tenant_for_key",
]


def tenant_for_key(directory: TenantDirectory, api_key: str) -> str | None:
    """The tenant whose key this is, or None; only the key's SHA-256 is looked up."""
    return directory.tenant_for_key(hash_api_key(api_key))


def acting_tenant(directory: TenantDirectory, api_key: str | None, requested: str | None) -> str | None:
    """The key's tenant; without a key (an operator), ``requested`` as named, None for all tenants."""
    if api_key is None:
        return requested
    tenant = tenant_for_key(directory, api_key)
    if tenant is None:
        raise InvalidRequest(
            "TENANTML_API_KEY is not a known tenant key: check the key, or unset it to act as operator"
        )
    if requested not in (None, tenant):
        raise NotFound(f"tenant {requested!r} is not visible with this API key")
    return tenant


def required_tenant(directory: TenantDirectory, api_key: str | None, requested: str | None) -> str:
    """Like :func:`acting_tenant`, for commands that act on one tenant: an operator must name it."""
    tenant = acting_tenant(directory, api_key, requested)
    if tenant is None:
        raise InvalidRequest("name the tenant with --tenant T (or set TENANTML_API_KEY to a tenant's key)")
    return tenant


def create_tenant(directory: TenantDirectory, name: str, now: datetime, api_key: str | None = None) -> str:
    """Create tenant ``name``; returns its new API key, which is never stored (only its digest is).

    ``api_key`` is the caller's: a tenant's key may not create tenants, only an operator may.
    """
    if api_key is not None:
        raise InvalidRequest("creating tenants is an operator command: unset TENANTML_API_KEY")
    new_key = new_api_key()
    directory.add_tenant(check_tenant_name(name), hash_api_key(new_key), now)
    return new_key


def set_queue_limit(directory: TenantDirectory, name: str, limit: int | None, api_key: str | None = None) -> int | None:
    """Set (None: clear) how many requests tenant ``name`` may have waiting; an operator's command."""
    if api_key is not None:
        raise InvalidRequest("quotas are set by the operator: unset TENANTML_API_KEY")
    directory.set_queue_limit(check_tenant_name(name), check_quota_value("--max-queued", limit))
    return directory.queue_limit(name)


def set_running_limit(
    directory: TenantDirectory, name: str, limit: int | None, api_key: str | None = None
) -> int | None:
    """Set (None: clear) how many trainings tenant ``name`` may run at once; an operator's command.

    Admission never checks it: the scheduler starts a tenant's waiting requests only while the
    tenant runs fewer than its limit, so a request beyond it is accepted and waits.
    """
    if api_key is not None:
        raise InvalidRequest("quotas are set by the operator: unset TENANTML_API_KEY")
    directory.set_running_limit(check_tenant_name(name), check_quota_value("--max-running", limit))
    return directory.running_limit(name)


def list_tenants(directory: TenantDirectory, api_key: str | None) -> list[str]:
    """Every tenant for an operator; a tenant's key sees only its own."""
    if api_key is None:
        return directory.list_tenants()
    return [required_tenant(directory, api_key, None)]


def quotas(directory: TenantDirectory, api_key: str | None, name: str | None = None) -> dict[str, Quota]:
    """Each tenant's own limits (None: the default), by name: every tenant's for an operator, one
    tenant's when named, and with a tenant's key only its own."""
    tenant = acting_tenant(directory, api_key, name)
    found = directory.quotas()
    if tenant is None:
        return found
    if tenant not in found:
        raise UnknownTenant(tenant, found)
    return {tenant: found[tenant]}


def existing(directory: TenantDirectory, tenant: str) -> str:
    """``tenant`` if it exists; UnknownTenant, with the closest name, otherwise."""
    if not directory.tenant_exists(tenant):
        raise UnknownTenant(tenant, directory.list_tenants())
    return tenant


def add_dataset(
    directory: TenantDirectory, storage: DatasetStorage, tenant: str, file: Path, name: str | None = None
) -> tuple[Path, Path]:
    """Copy ``file`` into the tenant's storage; returns (its name there, where it landed)."""
    if not directory.tenant_exists(tenant):
        raise UnknownTenant(tenant, directory.list_tenants())
    path = storage.add(tenant, file, name)
    return path.relative_to(storage.prefix(tenant)), path
