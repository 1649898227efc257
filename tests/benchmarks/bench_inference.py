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

import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil

from tenantml.platform.process import Service, claim_port, start_service, stop_services

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


# -- load generator (runs in a child process) ------------------------------------------------
async def _connection(
    host: str, port: int, request: bytes, stop_at: float, limit: int, state: dict[str, int], latencies: list[float]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while state["sent"] < limit and time.perf_counter() < stop_at:
            state["sent"] += 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, chunked = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if chunked:
                while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                    await reader.readexactly(size + 2)
                await reader.readexactly(2)
            elif length:
                await reader.readexactly(length)
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                state["errors"] += 1
    finally:
        writer.close()


def run_load(url: str, path: str, body: bytes, headers: Mapping[str, str], concurrency: int, duration_s: float,
             max_requests: int, warmup: int) -> tuple[list[float], int, float]:
    """Returns (sorted latencies in s, errors, elapsed s) of the measured part."""
    host, port = url.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body

    async def phase(limit: int, seconds: float) -> tuple[list[float], int, float]:
        state, latencies = {"sent": 0, "errors": 0}, []
        started = time.perf_counter()
        await asyncio.gather(*(
            _connection(host, int(port), request, started + seconds, limit, state, latencies)
            for _ in range(concurrency)
        ))
        return latencies, state["errors"], time.perf_counter() - started

    asyncio.run(phase(warmup, 10.0))
    latencies, errors, elapsed = asyncio.run(phase(max_requests, duration_s))
    return sorted(latencies), errors, elapsed


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
                 body: bytes, headers: dict[str, str], deadline_s: float = 180.0) -> Target:
    """Start a server and time it until its first successful prediction (the cold start)."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    service = start_service(name, command, env, folder, folder)
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


def _timed(what: str, action: Callable[[], object]) -> object:
    started = time.monotonic()
    value = action()
    print(f"{what}: {time.monotonic() - started:.1f} s", flush=True)
    return value
