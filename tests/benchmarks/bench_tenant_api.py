"""The tenant API's latency for submit and show, at concurrency 16 and 1, against the services called
in-process (no HTTP, no auth) on the same metadata: what HTTP, the key check and FastAPI add.

A real tenant API (uvicorn, `python -m tenantml.tenant_api.serve`) on SQLite metadata, as the
embedded platform runs it; 16 tenants, each with its own client thread and a small CSV; every
submission names a new model, so each is admitted and written (no supervisor runs: they stay
pending). Client threads share the machine's 2 cores with the server.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


from tenantml.services import trainings
from tenantml.services.admission import TrainingOrder, submit_training
from tests.benchmarks.report import row, table, write_section
from tests.support.platform import classification_frame
from tests.support.tenant_api import LiveTenantApi, client_for, live_tenant_api

CONCURRENCY = 16
SUBMITS_PER_CLIENT = 25
SHOWS_PER_CLIENT = 100


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _in_parallel(clients: int, work: Callable[[int], list[float]]) -> tuple[list[float], float]:
    """Latencies (s) of every call of ``work(i)`` over ``clients`` threads, and the wall time."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [lat for part in pool.map(work, range(clients)) for lat in part]
    return latencies, time.perf_counter() - started


def _timed(call: Callable[[], object], times: int) -> list[float]:
    found = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        found.append(time.perf_counter() - started)
    return found


def _http_round(api: LiveTenantApi, tenants: list[tuple[str, str]], clients: int, shown: list[str]
                ) -> dict[str, tuple[list[float], float]]:
    def submit(i: int) -> list[float]:
        with client_for(api.url, tenants[i][1]) as client:
            def one() -> None:
                answer = client.post("/v1/trainings", json={
                    "model": f"m{uuid.uuid4().hex[:8]}", "dataset": "data.csv", "target": "label",
                    "algorithm": "sgd_classifier", "params": {"epochs": 5}})
                assert answer.status_code == 202, answer.text
            return _timed(one, SUBMITS_PER_CLIENT)

    def show(i: int) -> list[float]:
        with client_for(api.url, tenants[i][1]) as client:
            def one() -> None:
                assert client.get(f"/v1/trainings/{shown[i]}").status_code == 200
            return _timed(one, SHOWS_PER_CLIENT)

    return {"submit": _in_parallel(clients, submit), "show": _in_parallel(clients, show)}


def _direct_round(api: LiveTenantApi, tenants: list[tuple[str, str]], clients: int, shown: list[str]
                  ) -> dict[str, tuple[list[float], float]]:
    def submit(i: int) -> list[float]:
        return _timed(lambda: submit_training(api.store, api.storage, TrainingOrder(
            tenants[i][0], f"m{uuid.uuid4().hex[:8]}", "data.csv", "label", "sgd_classifier", {"epochs": 5})),
            SUBMITS_PER_CLIENT)

    def show(i: int) -> list[float]:
        return _timed(lambda: trainings.show_request(api.store, shown[i], tenants[i][0]), SHOWS_PER_CLIENT)

    return {"submit": _in_parallel(clients, submit), "show": _in_parallel(clients, show)}


def main() -> None:
    with tempfile.TemporaryDirectory() as folder, live_tenant_api(Path(folder)) as api:
        tenants = [api.new_tenant() for _ in range(CONCURRENCY)]
        csv = classification_frame(rows=500).to_csv(index=False).encode()
        shown = []
        for tenant, key in tenants:
            with client_for(api.url, key) as client:
                assert client.put("/v1/datasets/data.csv", content=csv).status_code == 201
                shown.append(client.post("/v1/trainings", json={
                    "model": "shown", "dataset": "data.csv", "target": "label",
                    "algorithm": "sgd_classifier"}).json()["request_id"])
        for _ in range(2):  # warm both paths (imports, connections, the key cache)
            _http_round(api, tenants, 2, shown)
        results = {
            ("http", CONCURRENCY): _http_round(api, tenants, CONCURRENCY, shown),
            ("http", 1): _http_round(api, tenants, 1, shown),
            ("direct", CONCURRENCY): _direct_round(api, tenants, CONCURRENCY, shown),
            ("direct", 1): _direct_round(api, tenants, 1, shown),
        }
    rows = []
    for call in ("submit", "show"):
        ours, wall = results[("http", CONCURRENCY)][call]
        single = results[("http", 1)][call][0]
        direct = results[("direct", CONCURRENCY)][call][0]
        direct_single = results[("direct", 1)][call][0]
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            ms = 1000 * _percentile(ours, q)
            rows.append(row(f"{call}, concurrency 16, {name}", ms, "ms", "same API, concurrency 1",
                            1000 * _percentile(single, q), False))
            rows.append(row(f"{call}, concurrency 16, {name}", ms, "ms", "services in-process, concurrency 16",
                            1000 * _percentile(direct, q), False))
        rows.append(row(f"{call}, concurrency 16, throughput", len(ours) / wall, "req/s",
                        "services in-process, concurrency 16",
                        len(direct) / results[("direct", CONCURRENCY)][call][1], True))
        rows.append(row(f"{call}, concurrency 1, p50", 1000 * statistics.median(single), "ms",
                        "services in-process, concurrency 1", 1000 * statistics.median(direct_single), False))
    load = os.getloadavg()[1]
    body = table(rows) + (
        f"\n\n`python -m tests.benchmarks bench_tenant_api`: a real tenant API (uvicorn, one process) on SQLite "
        f"metadata; {CONCURRENCY} tenants, one client thread each (httpx, keep-alive), {SUBMITS_PER_CLIENT} "
        f"submissions and {SHOWS_PER_CLIENT} shows per thread; at concurrency 1 one thread does one tenant's share. "
        "A submission is the CLI's admission (tenant, model name, algorithm and parameters, the dataset's place, "
        "header and SHA-256 of a 500-row CSV, the queue quota, one insert) and names a new model each time; a show "
        "reads a request with its attempts. 'services in-process' calls submit_training and show_request on the same "
        "database from threads of the benchmark, without HTTP or the key check: the floor. The client threads share "
        f"the 2 cores with the server (load average {load:.1f} over the last 5 minutes at the end).")
    write_section("tenant_api", "Tenant API latency", body)


if __name__ == "__main__":
    main()
