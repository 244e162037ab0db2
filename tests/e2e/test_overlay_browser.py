"""The streamer's overlay in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
installed by .ci/run), through the real Envoy: superlikes appear once each, in order, across a server
restart (EventSource gives up on the 503 Envoy answers while no server is up; the page reconnects
itself with its last event id)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import Stack, stop_process
from tests.conftest import IN_CI, SigningKeys
from tests.e2e.conftest import stack_config
from tests.e2e.credentials import bearer_header, edge_token
from tests.e2e.http_client import request, superlike_path
from tests.support import migrated_world

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        if IN_CI:
            pytest.fail("chromium and chromedriver are required under CI=true (.ci/run installs them)")
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def send(port: int, stream_id: str, token: str, deadline_s: float = 20.0) -> str:
    """One superlike over REST, retried with the same key while the server is (re)starting."""
    key = uuid.uuid4().hex
    deadline = time.monotonic() + deadline_s
    while True:
        response = request(
            port, "POST", superlike_path(stream_id), headers={**bearer_header(token), "Idempotency-Key": key}
        )
        if response.status == 200:
            return response.json()["superlikeId"]
        assert response.status == 503 and time.monotonic() < deadline, response.body
        time.sleep(0.2)


def shown(driver: object, count: int, timeout_s: float = 20.0) -> list[str]:
    """The ids of the overlay's entries once it shows `count` of them (or what it shows at the timeout)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout_s
    while True:
        ids = [item.get_attribute("data-superlike-id") for item in driver.find_elements(By.CSS_SELECTOR, "li")]  # type: ignore[attr-defined]
        if len(ids) >= count or time.monotonic() > deadline:
            return ids
        time.sleep(0.1)


def wait_until_following(driver: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while driver.execute_script("return document.body.dataset.feed") != "open":  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the overlay never connected to the feed"
        time.sleep(0.05)


def test_the_overlay_shows_each_superlike_once_in_order_across_a_server_restart(
    browser: object, signing_keys: SigningKeys, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'overlay.db'}"
    import asyncio

    world = asyncio.run(migrated_world(url, coins=1000))
    stack = Stack(stack_config(tmp_path / "stack", url, signing_keys))
    stack.start()
    try:
        port = stack.config.http_port
        token = edge_token(signing_keys, world.viewer_id)
        browser.get(f"http://127.0.0.1:{port}/overlay/{world.stream_id}?access_token={token}")  # type: ignore[attr-defined]
        wait_until_following(browser)
        first = [send(port, world.stream_id, token) for _ in range(3)]
        assert shown(browser, 3) == first

        stop_process(stack.server)  # SIGTERM: the feed ends with an error event, then nothing answers
        stack.server = None
        time.sleep(1.5)  # long enough for EventSource's retry to meet Envoy's 503 and give up
        stack.start_server()
        later = [send(port, world.stream_id, token) for _ in range(2)]

        assert shown(browser, 5) == first + later
        time.sleep(1)  # nothing arrives twice later either
        assert shown(browser, 6, timeout_s=0) == first + later
        logged = stack.envoy_log.read_text()
        assert f'"path":"/overlay/{world.stream_id}"' in logged and token not in logged
    finally:
        stack.stop()
