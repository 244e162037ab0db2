from __future__ import annotations

import pytest

from server.config import ConfigError, load_settings

AUTH = {"LIVECHAT_JWKS": "/keys/jwks.json", "LIVECHAT_JWT_ISSUER": "iss", "LIVECHAT_JWT_AUDIENCE": "aud"}


def test_defaults_use_the_embedded_sqlite_database() -> None:
    settings = load_settings({})
    assert settings.database_url == "sqlite:///.local/livechat.db"  # where `make run` keeps its data
    assert (settings.grpc_host, settings.grpc_port) == ("127.0.0.1", 50051)
    assert settings.idempotency_retention_hours == 24
    assert (settings.log_format, settings.metrics_port) == ("text", None)  # no metrics endpoint unless asked


def test_all_variables_are_read() -> None:
    settings = load_settings(
        {
            **AUTH,
            "DATABASE_URL": "postgresql://u@db/livechat",
            "LIVECHAT_GRPC_HOST": "0.0.0.0",
            "LIVECHAT_GRPC_PORT": "6000",
            "LIVECHAT_DB_POOL_SIZE": "32",
            "LIVECHAT_DB_BATCHES_IN_FLIGHT": "3",
            "LIVECHAT_SHUTDOWN_GRACE_SECONDS": "2.5",
            "LIVECHAT_IDEMPOTENCY_RETENTION_HOURS": "48",
            "LIVECHAT_LOG_LEVEL": "debug",
            "LIVECHAT_LOG_FORMAT": "JSON",
            "LIVECHAT_METRICS_PORT": "9464",
            "LIVECHAT_METRICS_HOST": "0.0.0.0",
        }
    )
    assert settings.database_url == "postgresql://u@db/livechat"
    assert (settings.grpc_host, settings.grpc_port, settings.db_pool_size) == ("0.0.0.0", 6000, 32)
    assert settings.db_batches_in_flight == 3
    assert (settings.shutdown_grace_seconds, settings.idempotency_retention_hours) == (2.5, 48)
    assert settings.log_level == "DEBUG"
    assert (settings.log_format, settings.metrics_host, settings.metrics_port) == ("json", "0.0.0.0", 9464)
    settings.require_auth()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LIVECHAT_GRPC_PORT": "http"}, "LIVECHAT_GRPC_PORT='http' is not an integer"),
        ({"LIVECHAT_GRPC_PORT": "70000"}, "LIVECHAT_GRPC_PORT=70000 is out of range [0, 65535]"),
        ({"LIVECHAT_DB_BATCHES_IN_FLIGHT": "0"}, "LIVECHAT_DB_BATCHES_IN_FLIGHT=0 is out of range [1, 64]"),
        (
            {"LIVECHAT_DB_BATCHES_IN_FLIGHT": "4", "LIVECHAT_DB_POOL_SIZE": "4"},
            "LIVECHAT_DB_BATCHES_IN_FLIGHT=4 must be below LIVECHAT_DB_POOL_SIZE=4",
        ),
        (
            {"LIVECHAT_IDEMPOTENCY_RETENTION_HOURS": "1"},
            "LIVECHAT_IDEMPOTENCY_RETENTION_HOURS=1 is out of range [24, 8760]",
        ),
        ({"LIVECHAT_SHUTDOWN_GRACE_SECONDS": "soon"}, "LIVECHAT_SHUTDOWN_GRACE_SECONDS='soon' is not a number"),
        ({"LIVECHAT_LOG_FORMAT": "xml"}, "LIVECHAT_LOG_FORMAT='xml' must be text or json"),
        ({"LIVECHAT_METRICS_PORT": "metrics"}, "LIVECHAT_METRICS_PORT='metrics' is not an integer"),
        ({"LIVECHAT_LOG_LEVEL": "loud"}, "LIVECHAT_LOG_LEVEL='LOUD' must be DEBUG, INFO, WARNING or ERROR"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must start with sqlite:// or postgresql://, got 'mysql'"),
        (
            {"LIVECHAT_JWT_HS256_SECRET": "short"},
            "LIVECHAT_JWT_HS256_SECRET must be at least 32 bytes (RFC 7518 section 3.2)",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert str(raised.value) == message


def test_serving_requires_the_token_settings() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"LIVECHAT_JWKS": "/k"}).require_auth()
    assert (
        str(raised.value)
        == "LIVECHAT_JWT_ISSUER, LIVECHAT_JWT_AUDIENCE must be set to serve (see README: Configuration)"
    )


def test_the_live_feeds_fan_out_budget_and_its_floor_are_read_and_bounded() -> None:
    assert (load_settings({}).feed_fanout_per_second, load_settings({}).feed_fanout_floor) == (5000.0, 1.0)
    settings = load_settings({"LIVECHAT_FEED_FANOUT_PER_SECOND": "8000", "LIVECHAT_FEED_FANOUT_FLOOR": "0.25"})
    assert (settings.feed_fanout_per_second, settings.feed_fanout_floor) == (8000.0, 0.25)
    with pytest.raises(ConfigError, match=r"LIVECHAT_FEED_FANOUT_PER_SECOND=50.0 is out of range \[100.0, 1000000.0\]"):
        load_settings({"LIVECHAT_FEED_FANOUT_PER_SECOND": "50"})
    with pytest.raises(ConfigError, match=r"LIVECHAT_FEED_FANOUT_FLOOR=0.0 is out of range \[0.01, 1.0\]"):
        load_settings({"LIVECHAT_FEED_FANOUT_FLOOR": "0"})
