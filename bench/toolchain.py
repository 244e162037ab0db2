"""The load tools and libraries the benchmark needs, installed on demand, and the machine it ran on."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any


class ToolError(RuntimeError):
    pass


def ensure_binary(name: str, package: str) -> str:
    """The path of `name`; installs the Debian `package` with apt-get only when the binary is absent."""
    found = shutil.which(name)
    if found:
        return found
    if not shutil.which("apt-get"):
        raise ToolError(f"{name} is missing and apt-get is not available: install {package} ({name}) yourself")
    if os.geteuid() != 0:
        raise ToolError(f"{name} is missing: run `sudo apt-get install -y {package}` (needs root)")
    print(f"[bench] {name} not found: apt-get install -y {package}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    found = shutil.which(name)
    if result.returncode != 0 or not found:
        tail = (result.stderr or result.stdout).strip()[-1500:]
        raise ToolError(f"could not install {package} (needed for {name}) with apt-get:\n{tail}")
    return found


def ensure_node() -> str:
    """Node.js runs bench/grpc_load.mjs (built-in modules only); `make install` needs it already (npm)."""
    found = shutil.which("node")
    if not found:
        raise ToolError("node is missing: install Node.js 18 or later (`make install` needs it too, for npm)")
    return found


def ensure_matplotlib() -> None:
    """matplotlib only draws the chart, so it is not a project dependency: installed into this venv on demand."""
    try:
        import matplotlib  # noqa: F401

        return
    except ImportError:
        pass
    print("[bench] matplotlib not found: pip install matplotlib (into this venv)", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "matplotlib"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ToolError(f"pip install matplotlib failed:\n{(result.stderr or result.stdout)[-1500:]}")


def _first_line(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0].strip() if text else "unknown"


def _envoy_version(envoy: str) -> str:
    line = _first_line([envoy, "--version"])
    match = re.search(r"/(\d+\.\d+\.\d+)/", line)
    return f"Envoy {match.group(1)}" if match else line


def machine_info(*, envoy: str, wrk: str, h2load: str, node: str | None = None) -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total_mb = None
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemTotal:"):
                mem_total_mb = int(line.split()[1]) // 1024
                break
    except OSError:
        pass
    import sqlite3

    import grpc

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_mb": mem_total_mb,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "sqlite": sqlite3.sqlite_version,
        "envoy": _envoy_version(envoy),
        "wrk": _first_line([wrk, "-v"]),
        "h2load": _first_line([h2load, "--version"]),
        **({"node": _first_line([node, "--version"])} if node else {}),
    }
