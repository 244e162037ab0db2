"""The server's Prometheus metrics, each server with a registry of its own (tests run several servers
in one process), served over HTTP on LIVECHAT_METRICS_PORT."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Latencies of this service sit between a millisecond (a refusal) and the 15 s route timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)
# A batch holds 1 to 128 superlikes (MAX_BATCH of both writers).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class MetricsEndpoint:
    httpd: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return self.httpd.server_port

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.superlikes = Counter(
            "livechat_superlikes",
            "SendSuperlike calls answered, by outcome reason (OK: charged or replayed; otherwise the "
            "ErrorInfo reason of the refusal)",
            ["reason"],
            registry=self.registry,
        )
        self.rpc_latency = Histogram(
            "livechat_rpc_duration_seconds",
            "Time from a call reaching the servicer to its answer, by method and gRPC status code",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "livechat_superlike_batch_size",
            "Superlikes written by one batch statement or transaction (group commit)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.credits_settled = Counter(
            "livechat_host_credits_settled",
            "Pending host credits folded into wallets by this server's settlement task",
            registry=self.registry,
        )
        self._last_settled = time.monotonic()
        self.settlement_lag = Gauge(
            "livechat_settlement_lag_seconds",
            "Seconds since this server's settlement task last completed a run; host earnings wait at "
            "most about this long (plus the interval) to become spendable. Grows while the database is down",
            registry=self.registry,
        )
        self.settlement_lag.set_function(lambda: time.monotonic() - self._last_settled)
        self.pool_in_use = Gauge(
            "livechat_db_pool_connections_in_use",
            "Database connections checked out of the pool now",
            registry=self.registry,
        )
        self.pool_size = Gauge(
            "livechat_db_pool_size", "Connections the pool keeps (its configured size)", registry=self.registry
        )
        # The labelled series each call updates, looked up once: `labels()` validates and locks on
        # every call, three times the cost of the update itself. Both label sets are bounded (the
        # methods, and the status codes and reasons of the error table).
        self._rpc_latency_series: dict[tuple[str, str], Histogram] = {}
        self._superlike_series: dict[str, Counter] = {}
        self.feed_subscribers = Gauge(
            "livechat_live_feed_subscribers",
            "Live-feed subscribers connected to this server (gRPC streams and SSE)",
            registry=self.registry,
        )

    # Callbacks the composition root hands to the parts it wires.
    def observe_superlike(self, reason: str) -> None:
        series = self._superlike_series.get(reason)
        if series is None:
            series = self._superlike_series[reason] = self.superlikes.labels(reason=reason)
        series.inc()

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        series = self._rpc_latency_series.get((method, code))
        if series is None:
            series = self._rpc_latency_series[method, code] = self.rpc_latency.labels(method=method, code=code)
        series.observe(seconds)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def observe_settlement(self, applied: int) -> None:
        self._last_settled = time.monotonic()
        self.credits_settled.inc(applied)

    def watch_pool(self, in_use: Callable[[], int], size: Callable[[], int]) -> None:
        self.pool_in_use.set_function(in_use)
        self.pool_size.set_function(size)

    def watch_feed_subscribers(self, count: Callable[[], int]) -> None:
        """The live feed's hub reports how many subscribers it holds, read at each scrape."""
        self.feed_subscribers.set_function(count)

    def serve(self, host: str, port: int) -> MetricsEndpoint:
        """Serves /metrics (any path, in fact) on host:port; port 0 picks a free one."""
        httpd, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsEndpoint(httpd, thread)
