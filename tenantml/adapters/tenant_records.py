"""Tenants in the metadata database: their key digests, their quotas and whether they are disabled."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from tenantml.adapters.database import attempts, requests, tenants
from tenantml.adapters.sql import SqlDatabase
from tenantml.domain.tenant import Quota
from tenantml.errors import TenantDisabled, TenantExists, UnknownTenant

__all__ = ["TenantRecords"]


class TenantRecords(SqlDatabase):
    """The tenants table: the TenantDirectory port."""

    def add_tenant(self, name: str, api_key_sha256: str, now: datetime) -> None:
        try:
            with self._begin() as conn:
                conn.execute(insert(tenants).values(name=name, api_key_sha256=api_key_sha256, created_at=now))
        except IntegrityError as err:
            raise TenantExists(name) from err

    def tenant_exists(self, name: str) -> bool:
        with self._connect() as conn:
            return conn.execute(select(tenants.c.name).where(tenants.c.name == name)).first() is not None

    def tenant_for_key(self, api_key_sha256: str) -> str | None:
        """The tenant of a key digest, None for an unknown one; a disabled tenant's key raises TenantDisabled,
        so every surface that looks keys up here refuses it with the same message."""
        with self._connect() as conn:
            row = conn.execute(select(tenants.c.name, tenants.c.disabled)
                               .where(tenants.c.api_key_sha256 == api_key_sha256)).first()
        if row is None:
            return None
        if row.disabled:
            raise TenantDisabled(str(row.name))
        return str(row.name)

    def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disable or enable tenant ``name``; returns whether it was disabled before."""
        with self._begin() as conn:
            row = conn.execute(select(tenants.c.disabled).where(tenants.c.name == name)).first()
            if row is None:
                raise UnknownTenant(name)
            conn.execute(update(tenants).where(tenants.c.name == name).values(disabled=disabled))
        return bool(row.disabled)

    def disabled_tenants(self) -> set[str]:
        with self._connect() as conn:
            return {str(row.name) for row in conn.execute(select(tenants.c.name).where(tenants.c.disabled.is_(True)))}

    def replace_key(self, name: str, api_key_sha256: str) -> None:
        """The tenant's key digest, replaced: the old key is unknown from this commit on."""
        with self._begin() as conn:
            if conn.execute(update(tenants).where(tenants.c.name == name)
                            .values(api_key_sha256=api_key_sha256)).rowcount != 1:
                raise UnknownTenant(name)

    def delete_tenant(self, name: str) -> int:
        """Remove the tenant, its requests and their attempts; returns how many requests were removed."""
        with self._begin() as conn:
            ids = select(requests.c.id).where(requests.c.tenant == name).scalar_subquery()
            conn.execute(delete(attempts).where(attempts.c.request_id.in_(ids)))
            removed = conn.execute(delete(requests).where(requests.c.tenant == name)).rowcount
            if conn.execute(delete(tenants).where(tenants.c.name == name)).rowcount != 1:
                raise UnknownTenant(name)
        return int(removed)

    def list_tenants(self) -> list[str]:
        with self._connect() as conn:
            return [str(row.name) for row in conn.execute(select(tenants.c.name).order_by(tenants.c.name))]

    def queue_limit(self, name: str) -> int | None:
        """The tenant's own limit on waiting requests; None: the platform's default applies."""
        with self._connect() as conn:
            row = conn.execute(select(tenants.c.max_queued).where(tenants.c.name == name)).first()
        if row is None:
            raise UnknownTenant(name)
        return None if row.max_queued is None else int(row.max_queued)

    def set_queue_limit(self, name: str, limit: int | None) -> None:
        with self._begin() as conn:
            if conn.execute(update(tenants).where(tenants.c.name == name).values(max_queued=limit)).rowcount != 1:
                raise UnknownTenant(name)

    def running_limit(self, name: str) -> int | None:
        """The tenant's own limit on running trainings; None: the platform's default applies."""
        with self._connect() as conn:
            row = conn.execute(select(tenants.c.max_running).where(tenants.c.name == name)).first()
        if row is None:
            raise UnknownTenant(name)
        return _count(row.max_running)

    def set_running_limit(self, name: str, limit: int | None) -> None:
        with self._begin() as conn:
            if conn.execute(update(tenants).where(tenants.c.name == name).values(max_running=limit)).rowcount != 1:
                raise UnknownTenant(name)

    def running_limits(self) -> dict[str, int | None]:
        """Every tenant's own running limit (None: the default), in one query: the scheduler reads it each tick.

        A disabled tenant's limit is 0, whatever its quota: the scheduler then starts none of its
        waiting requests, which stay queued, and needs no notion of its own of disabled tenants.
        """
        with self._connect() as conn:
            rows = conn.execute(select(tenants.c.name, tenants.c.max_running, tenants.c.disabled))
            return {str(row.name): 0 if row.disabled else _count(row.max_running) for row in rows}

    def quotas(self) -> dict[str, Quota]:
        """Every tenant's own limits, in one query, by name."""
        with self._connect() as conn:
            rows = conn.execute(select(tenants.c.name, tenants.c.max_queued, tenants.c.max_running)
                                .order_by(tenants.c.name))
            return {str(row.name): Quota(_count(row.max_queued), _count(row.max_running)) for row in rows}


def _count(value: int | None) -> int | None:
    return None if value is None else int(value)
