"""What a command works with: the settings, read when it first needs them, and the platform they name.

The root of the app puts a :class:`Session` on the click context; a command reads it with
:func:`session`. Settings are read late so that ``--help`` and usage errors never depend on them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

import typer

from tenantml.bootstrap import Connection
from tenantml.services import tenancy
from tenantml.settings import Settings

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
    def connection(self) -> Connection:
        return Connection(self.settings)

    @property
    def api_key(self) -> str | None:
        """The caller's tenant key (``TENANTML_API_KEY``); None for an operator."""
        key = self.settings.api_key
        return None if key is None else key.get_secret_value()

    def acting_tenant(self, requested: str | None = None) -> str | None:
        """The tenant the caller acts for (None: an operator, for all); see :mod:`tenantml.services.tenancy`."""
        return tenancy.acting_tenant(self.connection.store, self.api_key, requested)

    def required_tenant(self, requested: str | None) -> str:
        return tenancy.required_tenant(self.connection.store, self.api_key, requested)


def session(ctx: typer.Context) -> Session:
    found = ctx.find_object(Session)
    if found is None:
        raise RuntimeError("a tenantml command ran outside the tenantml app: call it through tenantml.cli.app")
    return found
