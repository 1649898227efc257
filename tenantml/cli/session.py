"""What a command works with: the settings, read when it first needs them, and the platform they name.

The root of the app puts a :class:`Session` on the click context; a command reads it with
:func:`session`. Settings are read late so that ``--help`` and usage errors never depend on them.

Two modes. As the operator (no ``TENANTML_API_URL``), a command connects to the metadata database,
Prefect and MLflow (:attr:`Session.connection`). In tenant mode (``TENANTML_API_KEY`` and
``TENANTML_API_URL`` both set) it talks to the tenant API only (:attr:`Session.tenant_api`), and
asking for the connection is refused: a tenant has no database, Prefect or MLflow address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

import typer

from tenantml.bootstrap import Connection
from tenantml.errors import InvalidRequest, NotFound
from tenantml.services import tenancy
from tenantml.settings import Settings
from tenantml.tenant_api.client import TenantApi

__all__ = ["Session", "TenantOption", "session"]

TenantOption = Annotated[
    str | None,
    typer.Option("--tenant", metavar="TENANT", help="The tenant to act for (default: the TENANTML_API_KEY's tenant)."),
]


@dataclass
class Session:
    load: Callable[[], Settings]

    @cached_property
    def settings(self) -> Settings:
        return self.load()

    @cached_property
    def tenant_api(self) -> TenantApi | None:
        """The tenant API client in tenant mode; None for the operator (or a key without an API URL)."""
        settings = self.settings
        if settings.api_key is None or not settings.api_url:
            return None
        return TenantApi(settings.api_url, settings.api_key.get_secret_value())

    @cached_property
    def connection(self) -> Connection:
        if self.tenant_api is not None:
            raise InvalidRequest(
                "this command is the operator's, and tenantml runs in tenant mode (TENANTML_API_KEY and "
                "TENANTML_API_URL are set): unset TENANTML_API_URL on the platform host to run it"
            )
        return Connection(self.settings)

    @cached_property
    def key_tenant(self) -> str:
        """The tenant of the key, as the tenant API names it (tenant mode only)."""
        assert self.tenant_api is not None
        return self.tenant_api.tenant()

    @property
    def api_key(self) -> str | None:
        """The caller's tenant key (``TENANTML_API_KEY``); None for an operator."""
        key = self.settings.api_key
        return None if key is None else key.get_secret_value()

    def acting_tenant(self, requested: str | None = None) -> str | None:
        """The tenant the caller acts for (None: an operator, for all); see :mod:`tenantml.services.tenancy`."""
        if self.tenant_api is not None:
            return self._remote_tenant(requested)
        return tenancy.acting_tenant(self.connection.store, self.api_key, requested)

    def required_tenant(self, requested: str | None) -> str:
        if self.tenant_api is not None:
            return self._remote_tenant(requested)
        return tenancy.required_tenant(self.connection.store, self.api_key, requested)

    def _remote_tenant(self, requested: str | None) -> str:
        """As :func:`tenancy.acting_tenant` answers: another tenant named is one that does not exist."""
        if requested is None:
            return self.key_tenant
        if requested != self.key_tenant:
            raise NotFound(f"tenant {requested!r} is not visible with this API key")
        return requested


def session(ctx: typer.Context) -> Session:
    found = ctx.find_object(Session)
    if found is None:
        raise RuntimeError("a tenantml command ran outside the tenantml app: call it through tenantml.cli.app")
    return found
