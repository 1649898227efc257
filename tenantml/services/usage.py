"""Usage per tenant over a window, for chargeback (``tenantml usage``): see :mod:`tenantml.domain.usage`."""

from __future__ import annotations

from datetime import datetime, timedelta

from tenantml.domain.usage import TenantUsage, usage_by_tenant
from tenantml.errors import InvalidRequest
from tenantml.ports import RequestStore

__all__ = ["parse_window", "tenant_usage"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> timedelta:
    """``90s``, ``15m``, ``24h`` or ``7d``."""
    number, unit = text[:-1], text[-1:].lower()
    if unit not in _UNITS or not number.isdigit() or int(number) == 0:
        raise InvalidRequest(f"invalid window {text!r}: give a positive whole number with s, m, h or d, e.g. 24h")
    return timedelta(seconds=int(number) * _UNITS[unit])


def tenant_usage(store: RequestStore, tenant: str | None, window: timedelta, now: datetime) -> list[TenantUsage]:
    """Each tenant's usage in the last ``window`` (one tenant's if ``tenant`` is named)."""
    since = now - window
    return list(usage_by_tenant(store.requests_touched_since(since, tenant), since, now).values())
