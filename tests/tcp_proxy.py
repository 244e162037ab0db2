"""A TCP forwarder the tests can cut and restore, to take a real database away from the server."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones, as a crashed database host would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, upstream_writer})
        link = Link(client=writer, upstream=upstream_writer)
        for source, sink, upstream in ((reader, upstream_writer, True), (upstream_reader, writer, False)):
            task = asyncio.create_task(self._pipe(source, sink, upstream, link))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    def forward(self, data: bytes, to_upstream: bool, link: Link) -> bool:
        """Whether to pass `data` on; subclasses may watch or withhold traffic."""
        return True

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, to_upstream: bool, link: Link
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.forward(data, to_upstream, link):
                    writer.write(data)
                    await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
            self._writers.discard(writer)


@dataclass
class Link:
    """One proxied connection: both ends, and room for a subclass's per-connection state."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    state: dict[str, bool] = field(default_factory=dict)
