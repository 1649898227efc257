"""Stopping a local worker chosen for removal only once it is idle: the drain's last step.

Prefect's process worker kills its flow runs on SIGTERM and leaves them Running
(PrefectHQ/prefect#22528, open; a drain PR was closed unmerged), and it has no way to stop taking
runs. So a draining worker keeps polling its class's shared queue, and is stopped only when it is
idle, checked in three steps:

1. **No child process.** A flow run is a child of its worker: ``prefect.engine`` itself, or the
   launcher (:mod:`tenantml.local.launch`) that lives as long as its fork-server child does.
2. **No run it may be about to start.** Between taking a run from the queue and starting its
   process, a worker leaves the run Scheduled (fetched) or Pending (claimed); neither has a child
   yet. So no Scheduled run due within the workers' prefetch window, and no run that went Pending
   lately, may wait in the class's queue (read from the Prefect API).
3. **Freeze, check again, terminate.** The worker is stopped with SIGSTOP, so it cannot poll,
   claim or fork while both checks run again; if it is still idle, SIGTERM is queued for it before
   SIGCONT, so the first thing it does when it runs again is to shut down.

What remains: a run whose state change the worker sent just before the freeze and the server had
not yet written when we read it. It reads as Scheduled, so it blocks the stop like any other. Only
a Pending run older than :data:`PENDING_FRESH_S` (a claim whose worker died) no longer blocks: such
a run never starts anyway. If the API does not answer, nothing is stopped. A draining worker under a
steady stream of runs may keep finding one, and then drains later: the scheduler dispatches no more
runs than the workers that are not draining can take (:class:`tenantml.ports.Capacity`), so the
stream ends when the queue does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil

from tenantml.errors import ServiceUnavailable
from tenantml.local.processes import Service, stop_services

__all__ = ["PENDING_FRESH_S", "SCHEDULED_AHEAD_S", "PrefectQueue", "has_children", "stop_if_idle"]

SCHEDULED_AHEAD_S = 60.0  # longer than the workers' prefetch (PREFECT_WORKER_PREFETCH_SECONDS, 10 s)
PENDING_FRESH_S = 120.0  # a claimed run starts its process within seconds; an older claim lost its worker
FREEZE_DEADLINE_S = 2.0


class PrefectQueue:
    """How many runs of a work queue a worker may be about to start, from the Prefect API."""

    def __init__(self, api_url: str, timeout_s: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s

    def claimable(self, pool: str, queue: str) -> int:
        """Scheduled runs due within :data:`SCHEDULED_AHEAD_S` and fresh Pending ones in ``pool``/``queue``."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
            WorkPoolFilter,
            WorkPoolFilterName,
            WorkQueueFilter,
            WorkQueueFilterName,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.settings import PREFECT_API_URL, temporary_settings

        try:  # Prefect's client: it sends the auth string and a CSRF token (a raw POST would need both)
            with temporary_settings({PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
                found = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING]))),
                    work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
                    work_queue_filter=WorkQueueFilter(name=WorkQueueFilterName(any_=[queue])),
                    limit=200,
                )
            runs: list[dict[str, Any]] = [run.model_dump(mode="json") for run in found]
        except Exception as err:
            raise ServiceUnavailable(
                f"the Prefect API at {self.api_url} did not list the runs of queue {queue!r} in pool {pool!r}: "
                f"{type(err).__name__}: {err}; no worker is stopped until it answers"
            ) from err
        now = datetime.now(UTC)
        return sum(1 for run in runs if _claimable(run, now))


def _claimable(run: dict[str, Any], now: datetime) -> bool:
    state = run.get("state") or {}
    if state.get("type") == "PENDING":
        since = _time(state.get("timestamp"))
        return since is None or now - since < timedelta(seconds=PENDING_FRESH_S)
    due = _time(run.get("next_scheduled_start_time") or run.get("expected_start_time"))
    return due is None or due - now < timedelta(seconds=SCHEDULED_AHEAD_S)


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def has_children(pid: int) -> bool:
    """Whether the process has a live child (its flow runs); a zombie child is a run that ended."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def stop_if_idle(service: Service, claimable: int | None, recheck: Any) -> bool:
    """Stop the worker if it is idle (see the module's docstring); True when it was stopped.

    ``claimable`` is the class queue's count read before the freeze; ``recheck()`` reads it again
    while the worker is frozen (it raises ServiceUnavailable when the API does not answer).
    """
    if has_children(service.pid) or claimable:
        return False
    try:
        os.kill(service.pid, signal.SIGSTOP)
    except ProcessLookupError:
        return True  # gone by itself: nothing to stop
    try:
        _wait_frozen(service.pid)
        if has_children(service.pid) or recheck():
            return False
        os.kill(service.pid, signal.SIGTERM)  # pending until SIGCONT: it shuts down before it can poll again
    except (ProcessLookupError, psutil.NoSuchProcess):
        return True
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(service.pid, signal.SIGCONT)
    stop_services([service])
    return True


def _wait_frozen(pid: int) -> None:
    """Until SIGSTOP has taken effect: a process is stopped only once the kernel says so."""
    process = psutil.Process(pid)
    end = time.monotonic() + FREEZE_DEADLINE_S
    while process.status() != psutil.STATUS_STOPPED:
        if time.monotonic() > end:
            raise ServiceUnavailable(f"worker pid {pid} did not stop for the idle check within {FREEZE_DEADLINE_S} s")
        time.sleep(0.005)
