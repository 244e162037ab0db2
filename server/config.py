"""Settings from environment variables, read once by the composition root; bad values fail loudly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from server.adapters.storage import (
    SingleProcessDatabase,
    UnsupportedDatabase,
    check_database_url,
    check_several_processes,
)
from server.services.feed_budget import DEFAULT_CHUNKS_PER_SECOND, DEFAULT_FLOOR


class ConfigError(Exception):
    """A setting is missing or malformed. The message names the variable and what it accepts."""


# The file `make run` creates and every `livechat` command uses unless DATABASE_URL says otherwise
# (relative to the directory the command runs in: the repository root for `make run`).
DEFAULT_DATABASE_URL = "sqlite:///.local/livechat.db"
MIN_IDEMPOTENCY_RETENTION_HOURS = 24
MAX_WORKERS = 64


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    jwks: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_hs256_secret: str | None = field(default=None, repr=False)
    jwt_leeway_seconds: int = 30
    db_pool_size: int = 10
    db_batches_in_flight: int = 1
    shutdown_grace_seconds: float = 10.0
    health_check_interval_seconds: float = 2.0
    settle_interval_seconds: float = 0.2
    idempotency_retention_hours: int = 24
    feed_ping_seconds: float = 15.0
    # Chunk writes per second this process may spend on all its live feed subscribers together
    # (server/services/feed_budget.py).
    feed_fanout_per_second: float = DEFAULT_CHUNKS_PER_SECOND
    # The share of it kept however late the event loop runs (1.0, the default: never shrinks).
    feed_fanout_floor: float = DEFAULT_FLOOR
    log_level: str = "INFO"
    log_format: str = "text"
    # None: no metrics endpoint; 0: any free port (tests read it back from the running server).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # Server processes `livechat serve` runs (server/workers/supervisor.py); 1 runs in-process.
    workers: int = 1
    # Where each worker listens for Envoy on a Unix socket of its own (worker-<i>.sock); calls on it
    # may rely on Envoy's token verification (server/api/caller.py). None: TCP only.
    edge_socket_dir: str | None = None

    def require_auth(self) -> None:
        """The server cannot run without a way to verify tokens; admin commands can."""
        missing = [
            name
            for name, value in (
                ("LIVECHAT_JWKS", self.jwks),
                ("LIVECHAT_JWT_ISSUER", self.jwt_issuer),
                ("LIVECHAT_JWT_AUDIENCE", self.jwt_audience),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"{', '.join(missing)} must be set to serve (see README: Configuration)")


def with_workers(settings: Settings, workers: int) -> Settings:
    """The settings for `workers` processes (`livechat serve --workers` overrides LIVECHAT_WORKERS).

    Several workers share the public gRPC port, so it must be a fixed one, and each serves metrics on
    a port of its own (LIVECHAT_METRICS_PORT + its index)."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"workers={workers} is out of range [1, {MAX_WORKERS}]")
    if workers > 1:
        try:
            check_several_processes(settings.database_url)
        except SingleProcessDatabase as error:
            raise ConfigError(f"{workers} workers: {error}") from None
        if settings.grpc_port == 0:
            raise ConfigError(f"{workers} workers share one gRPC port: set LIVECHAT_GRPC_PORT to a port number, not 0")
        if settings.metrics_port and settings.metrics_port + workers - 1 > 65535:
            raise ConfigError(
                f"LIVECHAT_METRICS_PORT={settings.metrics_port}: worker i serves metrics on that port + i, "
                f"which passes 65535 with {workers} workers"
            )
    return replace(settings, workers=workers)


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range [{low}, {high}]")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range [{low}, {high}]")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    log_level = env.get("LIVECHAT_LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"LIVECHAT_LOG_LEVEL={log_level!r} must be DEBUG, INFO, WARNING or ERROR")
    log_format = (env.get("LIVECHAT_LOG_FORMAT") or "text").lower()
    if log_format not in {"text", "json"}:
        raise ConfigError(f"LIVECHAT_LOG_FORMAT={log_format!r} must be text or json")
    metrics_port = None if not env.get("LIVECHAT_METRICS_PORT") else _int(env, "LIVECHAT_METRICS_PORT", 0, 0, 65535)
    secret = env.get("LIVECHAT_JWT_HS256_SECRET") or None
    if secret is not None and len(secret.encode()) < 32:
        raise ConfigError("LIVECHAT_JWT_HS256_SECRET must be at least 32 bytes (RFC 7518 section 3.2)")
    database_url = env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    try:
        check_database_url(database_url)
    except UnsupportedDatabase as error:
        raise ConfigError(f"DATABASE_URL must start with sqlite:// or postgresql://, got {error.scheme!r}") from None
    pool_size = _int(env, "LIVECHAT_DB_POOL_SIZE", 10, 1, 200)
    # Batch statements each hold a connection; key lookups, settlement and health need one too.
    batches_in_flight = _int(env, "LIVECHAT_DB_BATCHES_IN_FLIGHT", 1, 1, 64)
    if batches_in_flight >= pool_size:
        raise ConfigError(
            f"LIVECHAT_DB_BATCHES_IN_FLIGHT={batches_in_flight} must be below LIVECHAT_DB_POOL_SIZE={pool_size}"
        )
    settings = Settings(
        database_url=database_url,
        grpc_host=env.get("LIVECHAT_GRPC_HOST") or "127.0.0.1",
        grpc_port=_int(env, "LIVECHAT_GRPC_PORT", 50051, 0, 65535),
        jwks=env.get("LIVECHAT_JWKS", ""),
        jwt_issuer=env.get("LIVECHAT_JWT_ISSUER", ""),
        jwt_audience=env.get("LIVECHAT_JWT_AUDIENCE", ""),
        jwt_hs256_secret=secret,
        jwt_leeway_seconds=_int(env, "LIVECHAT_JWT_LEEWAY_SECONDS", 30, 0, 300),
        db_pool_size=pool_size,
        db_batches_in_flight=batches_in_flight,
        shutdown_grace_seconds=_float(env, "LIVECHAT_SHUTDOWN_GRACE_SECONDS", 10.0, 0.0, 300.0),
        health_check_interval_seconds=_float(env, "LIVECHAT_HEALTH_INTERVAL_SECONDS", 2.0, 0.1, 60.0),
        settle_interval_seconds=_float(env, "LIVECHAT_SETTLE_INTERVAL_SECONDS", 0.2, 0.01, 60.0),
        idempotency_retention_hours=_int(
            env, "LIVECHAT_IDEMPOTENCY_RETENTION_HOURS", 24, MIN_IDEMPOTENCY_RETENTION_HOURS, 24 * 365
        ),
        feed_ping_seconds=_float(env, "LIVECHAT_FEED_PING_SECONDS", 15.0, 0.05, 15.0),
        feed_fanout_per_second=_float(
            env, "LIVECHAT_FEED_FANOUT_PER_SECOND", DEFAULT_CHUNKS_PER_SECOND, 100.0, 1_000_000.0
        ),
        feed_fanout_floor=_float(env, "LIVECHAT_FEED_FANOUT_FLOOR", DEFAULT_FLOOR, 0.01, 1.0),
        log_level=log_level,
        log_format=log_format,
        metrics_port=metrics_port,
        metrics_host=env.get("LIVECHAT_METRICS_HOST") or "127.0.0.1",
        edge_socket_dir=env.get("LIVECHAT_EDGE_SOCKET_DIR") or None,
    )
    return with_workers(settings, _int(env, "LIVECHAT_WORKERS", 1, 1, MAX_WORKERS))
