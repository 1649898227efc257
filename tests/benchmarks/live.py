"""What the benchmarks on the live embedded platform share: a quick mode, waiting for requests,
percentiles, the platform's processes and memory, and a stop that does not hang."""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psutil

from tenantml.domain.request import TrainingRequest
from tenantml.local.embedded import EmbeddedPlatform
from tests.support.platform import RunningPlatform
from tests.support.waiting import wait_for

__all__ = ["QUICK", "all_done", "percentile", "platform_memory", "running_platform", "seconds_to_run"]

QUICK = os.environ.get("BENCH_QUICK") == "1"


@contextmanager
def running_platform(embedded: EmbeddedPlatform) -> Iterator[EmbeddedPlatform]:
    """Stop the platform by pid on leaving, its supervisor thread first.

    EmbeddedPlatform.stop() joins the supervisor thread without telling it to stop (it sets
    ``_stopping``, the thread waits on ``_stop_supervising``), which costs 30 s per platform and
    leaves the thread ticking against stopped servers; stop_supervisor() first avoids both.
    """
    try:
        yield embedded
    finally:
        embedded.stop_supervisor()
        embedded.stop()


def all_done(platform: RunningPlatform, request_ids: Iterable[str], timeout_s: float) -> list[TrainingRequest]:
    """Wait until every request has ended and been finalized; the requests, in the given order."""
    ids = list(request_ids)

    def done() -> list[TrainingRequest] | None:
        found = [platform.request(request_id) for request_id in ids]
        return found if all(r.status.is_terminal and r.finalized_at for r in found) else None

    return wait_for(done, timeout_s, f"{len(ids)} requests to end", every_s=0.5)


def seconds_to_run(request: TrainingRequest) -> float:
    """Queued until its training code first ran: the first attempt's running_at minus created_at."""
    first = request.attempts[0]
    assert first.running_at is not None, f"request {request.id} never ran: {request.status} {request.reason}"
    return (first.running_at - request.created_at).total_seconds()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def platform_memory(embedded: EmbeddedPlatform) -> tuple[float, float, int]:
    """(RSS MB, PSS MB, processes) of the platform: this process (its supervisor and provisioner
    threads run here), every service it started, and all their descendants (forked flow runs)."""
    roots = [psutil.Process(), *(psutil.Process(s.pid) for s in embedded.services if s.alive())]
    tree: dict[int, psutil.Process] = {}
    for root in roots:
        try:
            for proc in [root, *root.children(recursive=True)]:
                tree[proc.pid] = proc
        except psutil.NoSuchProcess:
            continue
    rss = pss = 0.0
    for proc in tree.values():
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss, pss = rss + info.rss, pss + getattr(info, "pss", info.rss)
    return rss / 2**20, pss / 2**20, len(tree)
