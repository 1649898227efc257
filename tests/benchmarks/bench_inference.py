"""Inference benchmark: our BentoML service against `mlflow models serve` and a bare FastAPI endpoint.

All three serve the same registered model (a scaled SGD classifier, what ``sgd_classifier``
trains) with one worker each, on 127.0.0.1, one row per request. The load generator is a plain
asyncio HTTP/1.1 client with keep-alive connections, run in its own process; every run is bounded
in requests and seconds. Servers are measured in interleaved rounds (best round kept) so that
background load on a shared machine hits all of them alike. Also measured: cold start (process
start to first answered prediction), resident memory of each server's process tree, our p99 with
``gc.freeze()`` turned off, and the memory of one service holding 100 tenants' models.

Run: ``python -m tests.benchmarks.bench_inference`` (about 3 minutes on 2 cores). Results go to the
README's Benchmarks section (``report.write_section("inference", ...)``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar
from pathlib import Path

import psutil

from tenantml.local.processes import Service, claim_port, start_service, stop_services
from tests.benchmarks.load import run_load

T = TypeVar("T")

ROUNDS = 2
DURATION_S = 5.0
MAX_REQUESTS = 20_000
WARMUP_REQUESTS = 300
TENANTS_FOR_MEMORY = 100


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    count: int
    errors: int
    cpu_ms_per_request: float = 0.0


# -- servers -----------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    url: str
    path: str
    body: bytes
    headers: dict[str, str]
    service: Service
    cold_start_s: float = 0.0


def tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def tree_cpu_s(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def _post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


def start_target(name: str, command: list[str], env: Mapping[str, str], folder: Path, port: int, path: str,
                 body: bytes, headers: dict[str, str], cwd: Path | None = None, deadline_s: float = 180.0) -> Target:
    """Start a server and time it until its first successful prediction (the cold start)."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    service = start_service(name.split(" ")[0], command, env, folder, cwd or folder)
    url = f"http://127.0.0.1:{port}"
    while _post(url + path, body, headers) != 200:
        if not service.alive():
            raise RuntimeError(f"{name} exited; log {service.log_path}:\n{service.log_path.read_text()[-3000:]}")
        if time.monotonic() - started > deadline_s:
            stop_services([service])
            raise RuntimeError(f"{name} did not answer within {deadline_s} s; log {service.log_path}")
        time.sleep(0.05)
    return Target(name, url, path, body, headers, service, time.monotonic() - started)


def measure(pool: ProcessPoolExecutor, target: Target, concurrency: int) -> LoadResult:
    cpu_before = tree_cpu_s(target.service.pid)
    latencies, errors, elapsed = pool.submit(
        run_load, target.url, target.path, target.body, target.headers, concurrency, DURATION_S, MAX_REQUESTS,
        WARMUP_REQUESTS,
    ).result()
    cpu = tree_cpu_s(target.service.pid) - cpu_before
    if not latencies:
        raise RuntimeError(f"{target.name}: no successful request ({errors} errors)")

    def quantile(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    count = len(latencies)
    return LoadResult(count / elapsed, quantile(0.5), quantile(0.99), count, errors,
                      1000 * cpu / (count + errors + WARMUP_REQUESTS))


def best_of_rounds(pool: ProcessPoolExecutor, targets: list[Target], concurrency: int) -> dict[str, LoadResult]:
    best: dict[str, LoadResult] = {}
    for _ in range(ROUNDS):
        for target in targets:
            result = measure(pool, target, concurrency)
            print(f"  {target.name:<22} c={concurrency:<3} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                  f"p99 {result.p99_ms:6.2f} ms  cpu/req {result.cpu_ms_per_request:5.2f} ms  errors {result.errors}",
                  flush=True)
            if target.name not in best or result.rps > best[target.name].rps:
                best[target.name] = result
    return best


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _timed(what: str, action: Callable[[], T]) -> T:
    started = time.monotonic()
    value = action()
    print(f"{what}: {time.monotonic() - started:.1f} s", flush=True)
    return value


# -- the benchmark -------------------------------------------------------------------------------
def main() -> int:
    from tests.benchmarks.report import row, table, write_section
    from tests.support.inference import train_model
    from tests.support.servers import start_mlflow

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="tenantml-bench-"))
    (root / "mlflow").mkdir()
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    targets: list[Target] = []
    tracking = _timed("MLflow server", lambda: start_mlflow(root / "mlflow"))
    try:
        platform = Platform(tracking.url, f"sqlite:///{root / 'tenantml.db'}")
        estimator, frame = train_model(7)
        version, source = platform.add_tenant("bench-a", estimator, frame)
        _start_targets(targets, root, platform, version, frame)
        for target in targets:
            print(f"cold start {target.name}: {target.cold_start_s:.1f} s", flush=True)
        _check_same_predictions(targets, estimator, frame)

        results = {c: best_of_rounds(pool, targets, c) for c in (1, 16)}
        rss = {t.name: tree_rss_mb(t.service.pid) for t in targets}
        stop_services([t.service for t in targets[1:]])  # memory below is ours alone
        memory_before, memory_after, failures = _memory_with_many_tenants(targets[0], platform, estimator, frame,
                                                                          source)
    finally:
        stop_services([t.service for t in targets])
        tracking.stop()
        pool.shutdown()
        shutil.rmtree(root, ignore_errors=True)

    body = _report(results, rss, targets, memory_before, memory_after, failures, row, table)
    write_section("inference", "Inference: one BentoML service for all tenants vs `mlflow models serve`", body)
    print(body)
    print(f"benchmark took {time.monotonic() - started:.0f} s")
    return 0


@dataclass
class Platform:
    """What the benchmark's servers share: MLflow, the platform database, the tenants' keys."""

    tracking_uri: str
    database_url: str
    keys: dict[str, str] = field(default_factory=dict)

    def add_tenant(self, tenant: str, estimator: object, frame: object, source: str | None = None) -> tuple[str, str]:
        """The tenant with a champion ``churn`` model; returns (version, model URI)."""
        from tests.support.inference import add_tenant, register_model

        self.keys[tenant] = add_tenant(self.database_url, tenant)
        return register_model(self.tracking_uri, tenant, "churn", estimator, frame, source=source)

    def headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}


def _start_targets(targets: list[Target], root: Path, platform: Platform, version: str, frame: object) -> None:
    """Ours, `mlflow models serve`, a bare endpoint and our two ablations, in the report's order.

    Each serves bench-a's ``churn`` model at ``version``.
    """
    import mlflow

    from tenantml.local.project import project_dir
    from tenantml.local.servers import inference_command, inference_env
    from tests.support.inference import FEATURES, rows_for

    rows = rows_for(frame, 1)
    ours_body = json.dumps({"model": "churn", "rows": rows}).encode()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTML_")}
    uri = platform.tracking_uri
    ours_env = {**base_env, "TENANTML_DATABASE__URL": platform.database_url, "TENANTML_MLFLOW__TRACKING_URI": uri,
                "MLFLOW_TRACKING_URI": uri, "TENANTML_SERVING__MODEL_CACHE_SIZE": str(TENANTS_FOR_MEMORY + 16)}

    def ours(name: str, folder: str, extra: list[str]) -> Target:
        port = claim_port("inference", 0)
        home = root / folder
        home.mkdir()
        env = inference_env({**ours_env, "TENANTML_HOME": str(home)}, home)
        return start_target(name, inference_command(project_dir(), port, extra_args=extra), env, home / "logs", port,
                            "/predict", ours_body, platform.headers("bench-a"))

    targets.append(ours("tenantml (BentoML)", "ours", []))
    port = claim_port("mlflow serve", 0)
    targets.append(start_target(
        "mlflow models serve",
        [_bin("mlflow"), "models", "serve", "-m", f"models:/bench-a.churn/{version}", "--env-manager", "local",
         "--workers", "1", "--host", "127.0.0.1", "--port", str(port)],
        {**base_env, "MLFLOW_TRACKING_URI": uri,  # it runs `uvicorn` from PATH
         "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base_env.get('PATH', '')}"}, root / "mlflow-serve", port,
        "/invocations", json.dumps({"dataframe_records": rows}).encode(), {},
    ))
    model_dir = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/bench-a.churn/{version}", dst_path=str(root / "model"), tracking_uri=uri)
    port = claim_port("bare", 0)
    targets.append(start_target(
        "bare FastAPI+uvicorn",
        [sys.executable, "-m", "uvicorn", "--factory", "tests.benchmarks.bare_endpoint:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"],
        {**base_env, "BENCH_MODEL_DIR": model_dir, "BENCH_FEATURES": json.dumps([n for n, _ in FEATURES])},
        root / "bare", port, "/predict", ours_body, {}, cwd=project_dir(),
    ))
    targets.append(ours("tenantml, no gc.freeze", "ours-nofreeze", ["--arg", "gc_freeze=false"]))
    targets.append(ours("tenantml, stock timeout", "ours-stock-timeout", ["--arg", "timeout_fix=false"]))


def _memory_with_many_tenants(target: Target, platform: Platform, estimator: object, frame: object,
                              source: str) -> tuple[float, float, int]:
    """Our service's memory before and after many tenants' models (the same artifact) are loaded once;
    and how many of their requests failed."""
    memory_before = tree_rss_mb(target.service.pid)
    names = [f"bench-{i:03d}" for i in range(TENANTS_FOR_MEMORY)]
    for tenant in names:
        platform.add_tenant(tenant, estimator, frame, source=source)
    failures = sum(_post(target.url + "/predict", target.body, platform.headers(t)) != 200 for t in names)
    memory_after = tree_rss_mb(target.service.pid)
    print(f"{TENANTS_FOR_MEMORY} tenants' models: {memory_before:.0f} -> {memory_after:.0f} MB "
          f"({failures} failures)", flush=True)
    return memory_before, memory_after, failures


def _check_same_predictions(targets: list[Target], estimator: object, frame: object) -> None:
    """Every server must answer like the model itself before its speed means anything."""
    import numpy as np

    from tests.support.inference import rows_for

    rows = rows_for(frame, 20)
    expected = estimator.predict(np.asarray([[float(v) for v in r.values()] for r in rows])).tolist()  # type: ignore[attr-defined]
    for target in targets:
        body = (json.dumps({"dataframe_records": rows}) if target.path == "/invocations"
                else json.dumps({"model": "churn", "rows": rows})).encode()
        request = urllib.request.Request(target.url + target.path, data=body,
                                         headers={"Content-Type": "application/json", **target.headers})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        if answer["predictions"] != expected:
            raise RuntimeError(f"{target.name} predicts {answer['predictions']} instead of {expected}")


def _report(results: dict[int, dict[str, LoadResult]], rss: dict[str, float], targets: list[Target],
            memory_before: float, memory_after: float, failures: int,
            row: Callable[..., list[str]], table: Callable[..., str]) -> str:
    us, peer, bare, nofreeze, stock = (t.name for t in targets)
    one, sixteen = results[1], results[16]
    cold = {t.name: t.cold_start_s for t in targets}
    rows = [
        row("req/s, concurrency 1", one[us].rps, "req/s", peer, one[peer].rps, True),
        row("req/s, concurrency 16", sixteen[us].rps, "req/s", peer, sixteen[peer].rps, True),
        row("req/s, concurrency 1", one[us].rps, "req/s", bare, one[bare].rps, True),
        row("req/s, concurrency 16", sixteen[us].rps, "req/s", bare, sixteen[bare].rps, True),
        row("p50 latency, concurrency 1", one[us].p50_ms, "ms", peer, one[peer].p50_ms, False),
        row("p99 latency, concurrency 1", one[us].p99_ms, "ms", peer, one[peer].p99_ms, False),
        row("p99 latency, concurrency 16", sixteen[us].p99_ms, "ms", peer, sixteen[peer].p99_ms, False),
        row("p99 latency, concurrency 1", one[us].p99_ms, "ms", nofreeze, one[nofreeze].p99_ms, False),
        row("p99 latency, concurrency 16", sixteen[us].p99_ms, "ms", nofreeze, sixteen[nofreeze].p99_ms, False),
        row("p99 latency, concurrency 1", one[us].p99_ms, "ms", stock, one[stock].p99_ms, False),
        row("p99 latency, concurrency 16", sixteen[us].p99_ms, "ms", stock, sixteen[stock].p99_ms, False),
        row("server CPU per request, concurrency 1", one[us].cpu_ms_per_request, "ms", bare,
            one[bare].cpu_ms_per_request, False),
        row("server CPU per request, concurrency 16", sixteen[us].cpu_ms_per_request, "ms", peer,
            sixteen[peer].cpu_ms_per_request, False),
        row("cold start (spawn to first prediction)", cold[us], "s", peer, cold[peer], False),
        row("resident memory (process tree)", rss[us], "MB", peer, rss[peer], False),
        row(f"resident memory, {TENANTS_FOR_MEMORY} tenants' models", memory_after, "MB",
            f"{TENANTS_FOR_MEMORY} × {peer}", TENANTS_FOR_MEMORY * rss[peer], False),
    ]
    per_model = (memory_after - memory_before) / TENANTS_FOR_MEMORY
    targets_met = [
        ("≥ 3× mlflow models serve req/s at c=16", sixteen[us].rps >= 3 * sixteen[peer].rps,
         f"{sixteen[us].rps / sixteen[peer].rps:.2f}×"),
        ("p99 ≤ 15 ms at c=1", one[us].p99_ms <= 15, f"{one[us].p99_ms:.1f} ms"),
        ("≥ 0.6× the bare endpoint's req/s at c=1", one[us].rps >= 0.6 * one[bare].rps,
         f"{one[us].rps / one[bare].rps:.2f}×"),
        ("≥ 0.6× the bare endpoint's req/s at c=16", sixteen[us].rps >= 0.6 * sixteen[bare].rps,
         f"{sixteen[us].rps / sixteen[bare].rps:.2f}×"),
    ]
    lines = [f"- {name}: **{'met' if ok else 'missed'}** ({value})" for name, ok, value in targets_met]
    intro = (
        "One row per request, one worker per server, same model (scaled SGD classifier, 4 features), "
        f"{ROUNDS} interleaved rounds of {DURATION_S:.0f} s per server and concurrency (best kept), "
        "2-core machine shared with other work. `python -m tests.benchmarks.bench_inference`."
    )
    ablations = (
        "`no gc.freeze` and `stock timeout` are our service with one fix turned off: the heap freeze after "
        "loading, and the timeout middleware that cancels its timer (BentoML's keeps every request's context "
        "alive for 60 s, which is what made full garbage collections slow)."
    )
    memory = (
        f"{TENANTS_FOR_MEMORY} tenants' models cost {1024 * per_model:.0f} kB each in one service "
        f"({memory_before:.0f} → {memory_after:.0f} MB, {failures} failed requests). Targets:"
    )
    return "\n".join([intro, "", table(rows), "", ablations, "", memory, "", *lines])

if __name__ == "__main__":
    sys.exit(main())
