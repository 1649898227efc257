"""Best-effort side effects off a training's hot path: one daemon thread, in order, bounded.

Mirrors of progress into MLflow and Prefect's progress artifact are for people watching; the
training's truth is the metadata store, written synchronously and fenced. So a worker hands those
calls to a :class:`BackgroundSender` and goes on training: a slow or unreachable MLflow or Prefect
server slows the display, never the training. Calls run in the order they were handed over
(a mirror written after a fenced commit still lands after the mirrors before it); a call handed
over with a ``key`` replaces a pending call with the same key (the newest progress wins); when
``capacity`` calls are pending the oldest is dropped and counted. A failing call is logged with
what it was for and counted; it never reaches the training.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BackgroundSender"]

log = logging.getLogger(__name__)


@dataclass
class _Call:
    what: str
    call: Callable[[], object]
    key: str | None


class BackgroundSender:
    def __init__(self, name: str = "tenantml-mirror", capacity: int = 256) -> None:
        self.capacity = capacity
        self.dropped = 0
        self.failed = 0
        self._pending: deque[_Call] = deque()
        self._changed = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, what: str, call: Callable[[], object], key: str | None = None) -> None:
        """Run ``call`` soon, in order; with ``key``, in place of a pending call with the same key."""
        with self._changed:
            if self._closed:
                self.dropped += 1
                return
            if key is not None:
                for pending in self._pending:
                    if pending.key == key:
                        pending.what, pending.call = what, call
                        return
            if len(self._pending) >= self.capacity:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append(_Call(what, call, key))
            self._changed.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every call handed over so far has run (or ``timeout_s`` passed); True if all did."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def close(self, timeout_s: float = 10.0) -> bool:
        """Flush, then stop taking calls; True if everything handed over ran."""
        drained = self.flush(timeout_s)
        with self._changed:
            self._closed = True
            self.dropped += len(self._pending)
            self._pending.clear()
            self._changed.notify_all()
        return drained

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._closed:
                    self._changed.wait()
                if self._closed and not self._pending:
                    return
                item = self._pending.popleft()
                self._busy = True
            try:
                item.call()
            except Exception as err:  # best effort: the display may lag, the training must not stop
                self.failed += 1
                log.warning("%s failed (%s: %s); the training goes on", item.what, type(err).__name__, err)
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
