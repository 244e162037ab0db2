"""grpc.health.v1 status that follows the database: NOT_SERVING while it cannot be reached."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StorageHealth:
    """Probes the database every `interval` seconds and publishes the result for `services`.

    A request that meets an unreachable database calls `report_unavailable()`, which flips the status
    at once and makes the next probe run immediately, so recovery is noticed without waiting.
    """

    def __init__(
        self,
        servicer: health.aio.HealthServicer,
        probe: Callable[[], Awaitable[bool]],
        services: list[str],
        interval_seconds: float,
    ) -> None:
        self._servicer = servicer
        self._probe = probe
        self._services = services
        self._interval = interval_seconds
        self._wake = asyncio.Event()
        self._serving: bool | None = None
        self._flips: set[asyncio.Task[None]] = set()

    def report_unavailable(self) -> None:
        if self._serving:
            # The event loop keeps only a weak reference to tasks: hold this one until it is done.
            flip = asyncio.get_running_loop().create_task(self._publish(False))
            self._flips.add(flip)
            flip.add_done_callback(self._flips.discard)
        self._wake.set()

    async def check_now(self) -> bool:
        ok = await self._probe()
        await self._publish(ok)
        return ok

    async def run(self) -> None:
        while True:
            await self.check_now()
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            except TimeoutError:
                pass

    async def _publish(self, ok: bool) -> None:
        if ok == self._serving:
            return
        self._serving = ok
        if ok:
            log.info("database reachable: SERVING")
        else:
            log.warning("database unreachable: NOT_SERVING")
        for service in self._services:
            await self._servicer.set(service, SERVING if ok else NOT_SERVING)


def serving_status(address: str, timeout_seconds: float) -> str:
    """A server's overall health as a word (SERVING, NOT_SERVING, UNREACHABLE (...)), for probes."""
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_seconds
            )
        except grpc.RpcError as error:
            return f"UNREACHABLE ({error.code().name})"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
