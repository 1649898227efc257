"""A TCP forwarder in a thread: plays a server host that listens where another one (PostgreSQL on
127.0.0.1 only) cannot, e.g. on a test network's bridge address. Stopped, with every connection, on exit."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["forward"]

CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


@contextmanager
def forward(listen_host: str, target_host: str, target_port: int) -> Iterator[int]:
    """Forward ``listen_host:<a free port>`` to ``target_host:target_port``; yields the port."""
    loop = asyncio.new_event_loop()
    ready: list[asyncio.Server] = []
    started = threading.Event()
    connections: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            writer.close()
            return
        connections.update((writer, target_writer))
        await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))
        connections.difference_update((writer, target_writer))

    async def serve() -> None:
        ready.append(await asyncio.start_server(handle, listen_host, 0))
        started.set()

    thread = threading.Thread(target=loop.run_forever, name="tcp-forward", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=30)
    started.wait(30)
    try:
        yield ready[0].sockets[0].getsockname()[1]
    finally:
        def close() -> None:
            ready[0].close()
            for writer in list(connections):
                writer.close()
            loop.stop()

        loop.call_soon_threadsafe(close)
        thread.join(timeout=30)
        loop.close()
