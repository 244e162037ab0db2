"""`make run` as a new user meets it: start it, paste the banner's commands, stop it, rerun it.

The banner is the README's promise; each command in it is run exactly as printed, through bash.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.ports import free_port
from devstack.stack import ROOT

pytestmark = pytest.mark.e2e

READY = "Press Ctrl-C to stop."
VIEWER = "64d15f9e2e6c8f4d5a123456"


@dataclass
class Run:
    process: subprocess.Popen[bytes]
    output: Path

    @property
    def text(self) -> str:
        return self.output.read_text()

    def command(self, starts_with: str) -> str:
        """The banner's first command that starts with `starts_with`, with its continuation lines."""
        return self.commands(starts_with)[0]

    def commands(self, starts_with: str) -> list[str]:
        """Every banner command that starts with `starts_with`, each with its continuation lines."""
        lines = self.text.splitlines()
        found = []
        for first, line in enumerate(lines):
            if line.startswith(starts_with):
                end = first
                while lines[end].endswith("\\"):
                    end += 1
                found.append("\n".join(lines[first : end + 1]))
        return found

    def stop(self) -> None:
        # By PID: SIGTERM to the devstack process, which stops the server and Envoy it started.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        assert self.process.returncode == 0, self.text


def bash(command: str) -> str:
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (done.returncode, done.stderr) == (0, ""), command
    return done.stdout


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []
    database = tmp_path / "demo.db"

    def start(**extra_env: str) -> Run:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{database}",
            "LIVECHAT_HTTP_PORT": str(free_port()),
            "LIVECHAT_GRPC_PORT": str(free_port()),
            "LIVECHAT_ADMIN_PORT": str(free_port()),
            "LIVECHAT_METRICS_PORT": str(free_port()),
            **extra_env,
        }
        output = tmp_path / f"make-run-{len(runs)}.txt"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "devstack"],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run = Run(process, output)
        runs.append(run)
        deadline = time.monotonic() + 60
        while READY not in run.text:
            assert process.poll() is None and time.monotonic() < deadline, run.text
            time.sleep(0.2)
        return run

    start.database = database  # type: ignore[attr-defined]
    yield start
    for run in runs:
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGTERM)
            run.process.wait(30)


def test_the_banner_commands_work_as_pasted_and_reruns_say_what_they_did_to_the_demo_data(make_run) -> None:
    first = make_run()
    assert "  demo data          created: johndoe has 1000 coins\n" in first.text
    rest = json.loads(bash(first.command("curl -sS -X POST")))
    assert (rest["senderId"], rest["price"], rest["senderBalance"]) == (VIEWER, 10, "990")
    grpcurl = first.command(str(Path(sys.executable).parent / "grpcurl"))
    assert json.loads(bash(grpcurl))["sender_balance"] == "980"
    # The demo stream already had a short history; the two superlikes above are its newest.
    history_command, top_command = first.commands('curl -sS "http')
    history = json.loads(bash(history_command))
    assert [item["senderSnapshot"]["username"] for item in history["superlikes"]] == [
        "johndoe",
        "johndoe",
        "alice",
        "bob",
        "alice",
    ]
    assert history["nextPageToken"] == ""
    top = json.loads(bash(top_command))
    assert [(s["rank"], s["senderSnapshot"]["username"], s["coins"], s["superlikes"]) for s in top["supporters"]] == [
        (1, "alice", "20", 2),
        (2, "johndoe", "20", 2),
        (3, "bob", "10", 1),
    ]
    shown = json.loads(bash(first.command(f"DATABASE_URL='sqlite:///{make_run.database}' ")))
    assert (shown["id"], shown["balance"], shown["pendingCredits"]) == (VIEWER, 980, 0)
    token = bash(first.command(f"{Path(sys.executable).parent / 'livechat'} dev token"))
    assert re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+\n", token)
    server_metrics, envoy_metrics = re.search(
        r"  metrics            (\S+) \(server\), (\S+) \(Envoy\)", first.text
    ).groups()
    assert 'livechat_superlikes_total{reason="OK"} 2.0' in bash(f"curl -sS {server_metrics}")
    assert "envoy_cluster_upstream_rq_total" in bash(f"curl -sS {envoy_metrics}")
    openapi = re.search(r"  OpenAPI            (\S+)", first.text).group(1)
    assert json.loads(bash(f"curl -sS {openapi}"))["openapi"] == "3.1.0"
    first.stop()

    with sqlite3.connect(make_run.database) as db:  # the viewer spent nearly everything
        db.execute("UPDATE wallets SET balance = 50 WHERE user_id = ?", (VIEWER,))
    second = make_run()
    assert (
        "  demo data          kept from the last run; johndoe had fewer than 100 coins and was topped up by "
        "1000 to 1050\n" in second.text
    )
    second.stop()

    third = make_run(RESET="1")
    assert third.text.startswith(f"deleted {make_run.database}: starting from fresh demo data\n")
    assert "  demo data          created: johndoe has 1000 coins\n" in third.text
    third.stop()
