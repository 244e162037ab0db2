"""The production server (server.app.start_server) on an event loop of its own, in a thread.

pytest-grpc's channel and stubs are synchronous: a blocking call made on the test's event loop would
starve a server running on that same loop. On its own loop the real grpc.aio server answers while the
test thread waits, exactly as a separate process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from server.app import RunningServer, start_server
from server.config import Settings

START_TIMEOUT_S = 30.0


@contextlib.contextmanager
def serving_in_thread(settings: Settings) -> Iterator[RunningServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grpc-server-loop", daemon=True)
    thread.start()
    try:
        running = asyncio.run_coroutine_threadsafe(start_server(settings), loop).result(START_TIMEOUT_S)
        try:
            yield running
        finally:
            asyncio.run_coroutine_threadsafe(running.stop(1), loop).result(START_TIMEOUT_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_S)
        loop.close()
