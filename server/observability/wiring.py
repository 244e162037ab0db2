"""What the composition root attaches to a server so operators can see it: the metrics registry fed
by the observed RPCs, the batcher, settlement and the pool, the metrics endpoint, the RPC log line."""

from __future__ import annotations

from dataclasses import dataclass

from server.adapters.storage_base import Storage
from server.api.rpc_observer import RpcObserver, RpcRecord
from server.config import Settings
from server.observability.logs import log_rpc
from server.observability.metrics import MetricsEndpoint, ServiceMetrics

SEND_METHOD = "SendSuperlike"


@dataclass
class Instruments:
    metrics: ServiceMetrics
    # Wraps the servicer's methods where they are registered (one record per call).
    rpc_observer: RpcObserver
    endpoint: MetricsEndpoint | None

    @property
    def metrics_port(self) -> int | None:
        return None if self.endpoint is None else self.endpoint.port

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None


def instrument(settings: Settings, storage: Storage) -> Instruments:
    metrics = ServiceMetrics()

    def record_metrics(record: RpcRecord) -> None:
        metrics.observe_rpc(record.method, record.code, record.latency_seconds)
        if record.method == SEND_METHOD:
            metrics.observe_superlike(record.reason)

    def record_log(record: RpcRecord) -> None:
        log_rpc(
            record.method,
            record.code,
            record.reason,
            record.latency_seconds * 1000,
            record.request_id,
            record.caller_id,
        )

    storage.superlikes.observe_batches(metrics.observe_batch)
    metrics.watch_pool(storage.pool_in_use, storage.pool_size)
    endpoint = None
    if settings.metrics_port is not None:
        endpoint = metrics.serve(settings.metrics_host, settings.metrics_port)
    return Instruments(metrics, RpcObserver([record_metrics, record_log]), endpoint)
