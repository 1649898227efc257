"""Which version of a tenant's model is the champion, asked of the registry at most every few seconds.

The resolver remembers the last answer for each (tenant, model), including "no champion", with the
time it was checked. An answer younger than ``refresh_s`` is fresh. An older one may still be served
while a refresh runs in the background (the caller decides, see :meth:`ChampionResolver.current`),
so a promotion is served within about ``refresh_s`` and no request waits on the registry except the
first one for a model, or one after a long idle spell (``max_stale_s``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Champion", "ChampionResolver"]

Lookup = Callable[[str, str], "str | None"]


@dataclass(frozen=True)
class Champion:
    """The registry's answer for one model as last seen: its champion version (None: no champion)."""

    version: str | None
    checked_at: float
    fresh: bool


class ChampionResolver:
    def __init__(
        self,
        lookup: Lookup,
        refresh_s: float,
        *,
        max_stale_s: float | None = None,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``lookup(tenant, model)`` asks the registry; answers older than ``max_stale_s`` are not served."""
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be positive, got {refresh_s}")
        self._lookup = lookup
        self.refresh_s = refresh_s
        self.max_stale_s = max(refresh_s, max_stale_s if max_stale_s is not None else 30 * refresh_s)
        self._capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], tuple[str | None, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.lookups = 0

    def current(self, tenant: str, model: str) -> Champion | None:
        """The last answer if it may still be served (``fresh`` says whether it is due a refresh), else None."""
        key = (tenant, model)
        with self._lock:
            seen = self._seen.get(key)
        if seen is None:
            return None
        version, checked_at = seen
        age = self._clock() - checked_at
        if age > self.max_stale_s:
            return None
        return Champion(version, checked_at, age < self.refresh_s)

    def refresh(self, tenant: str, model: str) -> str | None:
        """Ask the registry now and remember the answer; errors of the lookup propagate."""
        version = self._lookup(tenant, model)
        now = self._clock()
        key = (tenant, model)
        with self._lock:
            self.lookups += 1
            self._seen[key] = (version, now)
            self._seen.move_to_end(key)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
        return version

    def resolve(self, tenant: str, model: str) -> str | None:
        """The champion version, asking the registry only if the last answer is not fresh (blocking)."""
        seen = self.current(tenant, model)
        if seen is not None and seen.fresh:
            return seen.version
        return self.refresh(tenant, model)

    def forget(self, tenant: str, model: str) -> None:
        with self._lock:
            self._seen.pop((tenant, model), None)
