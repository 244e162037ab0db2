"""LIVECHAT_WORKERS, `--workers` and LIVECHAT_EDGE_SOCKET_DIR: what several workers need, refused loudly."""

from __future__ import annotations

import dataclasses

import pytest

from server.config import ConfigError, load_settings, with_workers
from server.workers.role import WorkerRole

POSTGRES = {"DATABASE_URL": "postgresql://u@db/livechat"}


def test_one_worker_and_no_socket_by_default() -> None:
    settings = load_settings({})
    assert (settings.workers, settings.edge_socket_dir) == (1, None)


def test_workers_and_the_socket_directory_are_read() -> None:
    settings = load_settings({**POSTGRES, "LIVECHAT_WORKERS": "4", "LIVECHAT_EDGE_SOCKET_DIR": "/run/livechat"})
    assert (settings.workers, settings.edge_socket_dir) == (4, "/run/livechat")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LIVECHAT_WORKERS": "0"}, "LIVECHAT_WORKERS=0 is out of range [1, 64]"),
        ({"LIVECHAT_WORKERS": "many"}, "LIVECHAT_WORKERS='many' is not an integer"),
        (
            {"LIVECHAT_WORKERS": "2"},
            "2 workers: SQLite is served by one process (its single writer and the live feed's in-process "
            "fan-out live there): run one worker, or use PostgreSQL for more",
        ),
        (
            {**POSTGRES, "LIVECHAT_WORKERS": "2", "LIVECHAT_GRPC_PORT": "0"},
            "2 workers share one gRPC port: set LIVECHAT_GRPC_PORT to a port number, not 0",
        ),
        (
            {**POSTGRES, "LIVECHAT_WORKERS": "3", "LIVECHAT_METRICS_PORT": "65534"},
            "LIVECHAT_METRICS_PORT=65534: worker i serves metrics on that port + i, which passes 65535 with 3 workers",
        ),
    ],
)
def test_settings_several_workers_cannot_run_with_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    assert str(raised.value) == message


def test_the_command_line_overrides_the_environment_with_the_same_checks() -> None:
    assert with_workers(load_settings({**POSTGRES, "LIVECHAT_WORKERS": "4"}), 2).workers == 2
    with pytest.raises(ConfigError, match="SQLite is served by one process"):
        with_workers(load_settings({}), 2)
    assert with_workers(load_settings({}), 1).workers == 1


def test_each_worker_serves_metrics_on_a_port_of_its_own() -> None:
    settings = load_settings({**POSTGRES, "LIVECHAT_WORKERS": "3", "LIVECHAT_METRICS_PORT": "9464"})
    assert [WorkerRole(i, 3).settings_for(settings).metrics_port for i in range(3)] == [9464, 9465, 9466]
    any_port = dataclasses.replace(settings, metrics_port=0)
    assert WorkerRole(2, 3).settings_for(any_port).metrics_port == 0
    assert WorkerRole(1, 3).settings_for(dataclasses.replace(settings, metrics_port=None)).metrics_port is None


def test_only_workers_among_several_share_the_port_and_tag_their_logs() -> None:
    assert (WorkerRole().shares_port, WorkerRole().log_tag) == (False, None)
    assert (WorkerRole(1, 2).shares_port, WorkerRole(1, 2).log_tag) == (True, 1)
