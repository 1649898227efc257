"""The inference benchmark's load generator, run in a child process of its own.

A plain asyncio HTTP/1.1 client with keep-alive connections; every run is bounded in requests and
seconds. Kept apart from the benchmark so that the child imports nothing else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

__all__ = ["run_load"]


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
        state: dict[str, int] = {"sent": 0, "errors": 0}
        latencies: list[float] = []
        started = time.perf_counter()
        await asyncio.gather(*(
            _connection(host, int(port), request, started + seconds, limit, state, latencies)
            for _ in range(concurrency)
        ))
        return latencies, state["errors"], time.perf_counter() - started

    asyncio.run(phase(warmup, 10.0))
    latencies, errors, elapsed = asyncio.run(phase(max_requests, duration_s))
    return sorted(latencies), errors, elapsed
