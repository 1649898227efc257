"""Dispatch latency: a request until its training code runs on a warm worker, at tenantml's 1 s
worker polling and at Prefect's default 10 s, measured on the same machine in one run."""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from tenantml.settings import load_settings
from tests.benchmarks.bench_recovery import p95
from tests.benchmarks.report import row, table, write_section
from tests.support.platform import classification_frame, start_platform

REQUESTS = int(os.environ.get("BENCH_DISPATCH_REQUESTS", "10"))


def measure(query_seconds: float) -> dict[str, list[float]]:
    home = Path(tempfile.mkdtemp(prefix="tenantml-bench-dispatch-"))
    settings = load_settings(home=home, prefect={"worker_query_seconds": query_seconds, "small_workers": 1,
                                                 "large_workers": 0})
    embedded, platform = start_platform(settings)
    try:
        tenant = platform.new_tenant()
        dataset = platform.dataset(tenant, classification_frame(rows=2_000))
        platform.wait_done(platform.submit(tenant, dataset, model="warmup", epochs=1).request_id)  # warm the worker
        dispatch, end_to_end = [], []
        for n in range(REQUESTS):
            request = platform.wait_done(platform.submit(tenant, dataset, model=f"m{n}", epochs=1).request_id)
            attempt = request.attempts[0]
            dispatch.append((attempt.running_at - attempt.started_at).total_seconds())
            end_to_end.append((attempt.running_at - request.created_at).total_seconds())
        return {"dispatch": dispatch, "end_to_end": end_to_end}
    finally:
        embedded.stop()


def main() -> None:
    ours, default = measure(1.0), measure(10.0)
    peer = "Prefect default polling (10 s)"
    rows = [
        row("attempt dispatched -> training code running, p50", statistics.median(ours["dispatch"]), "s", peer,
            statistics.median(default["dispatch"]), False),
        row("attempt dispatched -> training code running, p95", p95(ours["dispatch"]), "s", peer, p95(default["dispatch"]), False),
        row("request submitted -> training code running, p50", statistics.median(ours["end_to_end"]), "s", peer,
            statistics.median(default["end_to_end"]), False),
        row("request submitted -> training code running, p95", p95(ours["end_to_end"]), "s", peer, p95(default["end_to_end"]), False),
    ]
    body = table(rows) + (
        f"\n\n{REQUESTS} sequential requests on one warm process worker each. 'Training code running' is the "
        "worker's first fenced write (the attempt's running_at). A request passes through two flow runs "
        "(training-master, then training-worker), each a fresh Python process started by Prefect's process worker."
    )
    write_section("dispatch", "Dispatch latency", body)
    print(body)


if __name__ == "__main__":
    main()
