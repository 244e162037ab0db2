"""docker-compose's Envoy healthcheck, run with bash against the real Envoy binary of the same version."""

from __future__ import annotations

import subprocess

import pytest

from devstack.ports import free_port
from tests.e2e.conftest import Edge
from tests.test_compose import SERVICES

pytestmark = pytest.mark.e2e


def healthcheck(admin_port: int) -> int:
    command = SERVICES["envoy"]["healthcheck"]["test"]
    script = command[3].replace("/dev/tcp/127.0.0.1/9901", f"/dev/tcp/127.0.0.1/{admin_port}")
    return subprocess.run([*command[1:3], script], capture_output=True, timeout=10).returncode


def test_the_envoy_healthcheck_passes_on_a_ready_envoy_and_fails_without_one(edge: Edge) -> None:
    assert healthcheck(edge.stack.config.admin_port) == 0
    assert healthcheck(free_port()) != 0
