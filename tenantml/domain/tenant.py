"""Tenants, their API keys and their quotas. Keys are shown once and stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets

from collections.abc import Mapping
from dataclasses import dataclass

from tenantml.errors import InvalidRequest, QuotaExceeded

__all__ = [
    "API_KEY_PREFIX",
    "Quota",
    "check_queue_limit",
    "check_quota_value",
    "effective_limits",
    "hash_api_key",
    "new_api_key",
]

API_KEY_PREFIX = "tml_"


@dataclass(frozen=True, slots=True)
class Quota:
    """A tenant's own limits; None: the platform's default (``TENANTML_QUOTAS__*``) applies.

    ``max_queued`` is checked at submission; ``max_running`` by the scheduler, which leaves a
    request beyond it waiting.
    """

    max_queued: int | None = None
    max_running: int | None = None


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def check_quota_value(name: str, value: int | None) -> int | None:
    """A quota is a count of zero or more, or None for no limit."""
    if value is not None and value < 0:
        raise InvalidRequest(f"invalid {name} {value}: give a count of 0 or more, or 'none' for no limit")
    return value


def check_queue_limit(tenant: str, waiting: int, limit: int | None) -> None:
    """Refuse one more waiting request when the tenant already has ``limit`` waiting."""
    if limit is not None and waiting >= limit:
        raise QuotaExceeded(tenant, waiting, limit)


def effective_limits(own: Mapping[str, int | None], default: int | None) -> dict[str, int]:
    """Each tenant's running limit as the scheduler takes it (``Policy(limits=...)``).

    A tenant's own limit wins; without one, ``default`` applies. A tenant with neither has no
    limit and is left out, as ``Policy.limits`` reads a missing tenant as unlimited. The running
    limit is the scheduler's to hold, not admission's: a request beyond it is accepted and waits.
    """
    limits = {tenant: limit if limit is not None else default for tenant, limit in own.items()}
    return {tenant: limit for tenant, limit in limits.items() if limit is not None}
