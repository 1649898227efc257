"""Dispatch latency: a request until its training code runs on a warm worker. tenantml (1 s worker
polling, flow runs forked from a pre-imported process) against Prefect's defaults (10 s polling, a
fresh interpreter per flow run), plus 1 s polling alone to show what each part buys."""

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


def measure(query_seconds: float, fork_server: bool) -> dict[str, list[float]]:
    home = Path(tempfile.mkdtemp(prefix="tenantml-bench-dispatch-"))
    settings = load_settings(home=home, prefect={"worker_query_seconds": query_seconds, "small_workers": 1,
                                                 "large_workers": 0, "fork_server": fork_server},
                             fleet={"provisioner": False})
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
    ours, default, polling_only = measure(1.0, True), measure(10.0, False), measure(1.0, False)
    peer = "Prefect defaults (10 s polling, fresh process)"
    alone = "1 s polling, fresh process"
    rows = [
        row("attempt dispatched -> training code running, p50", statistics.median(ours["dispatch"]), "s", peer,
            statistics.median(default["dispatch"]), False),
        row("attempt dispatched -> training code running, p95", p95(ours["dispatch"]), "s", peer, p95(default["dispatch"]), False),
        row("request submitted -> training code running, p50", statistics.median(ours["end_to_end"]), "s", peer,
            statistics.median(default["end_to_end"]), False),
        row("request submitted -> training code running, p95", p95(ours["end_to_end"]), "s", peer, p95(default["end_to_end"]), False),
        row("attempt dispatched -> training code running, p50", statistics.median(ours["dispatch"]), "s", alone,
            statistics.median(polling_only["dispatch"]), False),
        row("request submitted -> training code running, p50", statistics.median(ours["end_to_end"]), "s", alone,
            statistics.median(polling_only["end_to_end"]), False),
    ]
    body = table(rows) + (
        f"\n\n{REQUESTS} sequential requests on one warm process worker each. 'Training code running' is the "
        "worker's first fenced write (the attempt's running_at). A request passes through two flow runs "
        "(training-master, then training-worker). tenantml forks each from a process that imported Prefect, "
        "scikit-learn, pandas and MLflow once; Prefect's process worker otherwise starts a fresh interpreter."
    )
    write_section("dispatch", "Dispatch latency", body)
    print(body)


if __name__ == "__main__":
    main()
