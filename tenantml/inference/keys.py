"""Which tenant an API key belongs to: a SHA-256 lookup in the platform database, remembered briefly.

Keys are never stored or logged in clear; only their digest is looked up and cached. A known key is
remembered for ``ttl_s`` so a request does not touch the database; an unknown one is asked again
every time (there is nothing to serve it anyway).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from tenantml.domain.tenant import hash_api_key

__all__ = ["TenantKeys", "bearer_token"]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


class TenantKeys:
    def __init__(
        self,
        lookup: Callable[[str], str | None],
        ttl_s: float = 30.0,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``lookup(sha256_hex)`` returns the tenant of a key digest, or None."""
        self._lookup = lookup
        self.ttl_s = ttl_s
        self._capacity = capacity
        self._clock = clock
        self._known: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.lookups = 0

    def cached(self, api_key: str) -> str | None:
        """The tenant if the key was seen recently; None means "ask :meth:`tenant_for`"."""
        digest = hash_api_key(api_key)
        with self._lock:
            found = self._known.get(digest)
        if found is None or self._clock() - found[1] > self.ttl_s:
            return None
        return found[0]

    def tenant_for(self, api_key: str) -> str | None:
        """The key's tenant, from the cache or the database (blocking); None for an unknown key."""
        tenant = self.cached(api_key)
        if tenant is not None:
            return tenant
        digest = hash_api_key(api_key)
        tenant = self._lookup(digest)
        with self._lock:
            self.lookups += 1
            if tenant is None:
                self._known.pop(digest, None)
            else:
                self._known[digest] = (tenant, self._clock())
                self._known.move_to_end(digest)
                while len(self._known) > self._capacity:
                    self._known.popitem(last=False)
        return tenant
