"""Which worker this process is, as the supervisor started it (or the only one, without a supervisor)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from server.config import Settings


@dataclass(frozen=True)
class WorkerRole:
    index: int = 0
    count: int = 1
    # The pipe the supervisor waits on: one byte once this worker serves (supervisor.py).
    ready_fd: int | None = None

    @property
    def shares_port(self) -> bool:
        """The workers listen on one gRPC port together (SO_REUSEPORT)."""
        return self.count > 1

    @property
    def log_tag(self) -> int | None:
        """The worker index every log line carries, when there is more than one worker."""
        return self.index if self.count > 1 else None

    def settings_for(self, settings: Settings) -> Settings:
        """Each worker has a registry of its own, served on LIVECHAT_METRICS_PORT + its index (0: any)."""
        if not settings.metrics_port:
            return settings
        return dataclasses.replace(settings, metrics_port=settings.metrics_port + self.index)

    def announce_ready(self) -> None:
        if self.ready_fd is None:
            return
        try:
            os.write(self.ready_fd, b"1")
        finally:
            os.close(self.ready_fd)
