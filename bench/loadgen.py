"""Drives wrk (REST, HTTP/1.1) and the gRPC load generators (bench/grpc_load.mjs, or h2load) and
turns their output into one record.

gRPC load (`--grpc-tool node`, the default): one Node.js process (bench/grpc_load.mjs) with a few
HTTP/2 connections and `concurrency` streams in flight, another sender's token and (in spread)
another stream on every call, each answer's grpc-status read; it stops by time and lets the calls
in flight finish, so "superlikes written == calls answered OK" holds exactly.

gRPC load (`--grpc-tool h2load`, kept to compare the two): h2load sends the same body and headers on every request of one process, so each in-flight
slot is its own h2load process (-c1 -m1) with its own sender token and stream. The processes run a
fixed number of requests (-n, sized from the previous run's rate to last about the scenario's
duration), so every request finishes and "superlikes written == requests answered 200" can be checked
exactly: h2load only sees the HTTP status, a gRPC error travels in the grpc-status trailer.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_RUNNING: dict[int, subprocess.Popen[str]] = {}


def stop_all() -> None:
    """Stops every load-tool process still running, by PID (Ctrl-C, errors)."""
    for pid, process in list(_RUNNING.items()):
        if process.poll() is None:
            try:
                os.kill(pid, signal.SIGTERM)
                process.wait(3)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(3)
        _RUNNING.pop(pid, None)


def _spawn(command: list[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _RUNNING[process.pid] = process
    return process


def _reap(process: subprocess.Popen[str], deadline: float) -> tuple[str, str, bool]:
    """(stdout, stderr, timed_out); kills the process by PID when the deadline passes."""
    timed_out = False
    try:
        out, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
        process.kill()
        out, err = process.communicate()
    _RUNNING.pop(process.pid, None)
    return out, err, timed_out


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: uncompressed flag, 4-byte big-endian length, the bytes."""
    return struct.pack(">BI", 0, len(message)) + message


def percentile(sorted_values: list[int], pct: float) -> int | None:
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# --------------------------------------------------------------------------------------------- wrk


def run_wrk(
    wrk: str,
    *,
    url: str,
    script: Path,
    script_args: list[str],
    connections: int,
    duration_s: int,
) -> dict[str, Any]:
    threads = min(2, connections)
    command = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration_s}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        *script_args[:4],
        str(threads),
    ]
    started = time.monotonic()
    out, err, timed_out = _reap(_spawn(command), time.monotonic() + duration_s + 30)
    elapsed = time.monotonic() - started
    match = re.search(r"^BENCH_JSON (\{.*\})$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result (timed out: {timed_out}):\n{out[-2000:]}\n{err[-2000:]}")
    raw = json.loads(match.group(1))
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    duration = raw["duration_us"] / 1e6
    return {
        "tool": "wrk",
        "requests": raw["requests"],
        "ok": raw["requests"] - raw["status"],
        "non_2xx": raw["status"],
        "socket_errors": socket_errors,
        "duration_s": round(duration, 3),
        "rps": round(raw["requests"] / duration, 1) if duration else 0.0,
        "latency_ms": {
            "p50": raw["p50_us"] / 1000,
            "p90": raw["p90_us"] / 1000,
            "p99": raw["p99_us"] / 1000,
            "max": raw["max_us"] / 1000,
            "mean": round(raw["mean_us"] / 1000, 3),
        },
        "tool_wall_s": round(elapsed, 3),
        "processes": 1,
        "raw": raw,
    }


# ------------------------------------------------------------------------------------ grpc_load.mjs

GRPC_LOAD_SCRIPT = Path(__file__).resolve().parent / "grpc_load.mjs"


def write_frames(path: Path, frames: list[bytes]) -> Path:
    """The frames file grpc_load.mjs takes: one base64 gRPC frame a line, used in turn."""
    path.write_text("".join(base64.b64encode(frame).decode("ascii") + "\n" for frame in frames))
    return path


def run_grpc_load(
    node: str,
    *,
    target: str,
    method_path: str,
    frames_file: Path,
    tokens_file: Path | None,
    token_offset: int,
    concurrency: int,
    connections: int,
    duration_s: float,
    config_file: Path,
) -> dict[str, Any]:
    """One grpc_load.mjs run for `duration_s`; every call it started has finished when it returns."""
    config = {
        "target": target,
        "path": method_path,
        "connections": connections,
        "concurrency": concurrency,
        "duration_s": duration_s,
        "requests": None,
        "timeout_s": 10,
        "tokens_file": None if tokens_file is None else str(tokens_file),
        "token_offset": token_offset,
        "frames_file": str(frames_file),
    }
    config_file.write_text(json.dumps(config))
    started = time.monotonic()
    out, err, timed_out = _reap(_spawn([node, str(GRPC_LOAD_SCRIPT), str(config_file)]), started + duration_s + 40)
    elapsed = time.monotonic() - started
    match = re.search(r"^BENCH_JSON (\{.*\})$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"grpc_load.mjs printed no result (timed out: {timed_out}):\n{out[-2000:]}\n{err[-2000:]}")
    raw = json.loads(match.group(1))
    duration = raw["duration_us"] / 1e6
    grpc_errors = sum(raw["grpc_errors"].values())
    problems = [f"gRPC errors {raw['grpc_errors']}: {raw['error_samples']}"] if grpc_errors else []
    return {
        "tool": "grpc_load.mjs",
        "requests": raw["requests"],
        "ok": raw["ok"],
        # HTTP statuses other than 200 and gRPC statuses other than OK alike: the call failed.
        "non_2xx": raw["http_non_200"] + grpc_errors,
        "grpc_errors": raw["grpc_errors"],
        "socket_errors": raw["stream_errors"] + raw["timeouts"],
        "duration_s": round(duration, 3),
        "rps": round(raw["requests"] / duration, 1) if duration else 0.0,
        "latency_ms": {
            "p50": _ms(raw["p50_us"]),
            "p90": _ms(raw["p90_us"]),
            "p99": _ms(raw["p99_us"]),
            "max": _ms(raw["max_us"]),
            "mean": None if raw["mean_us"] is None else round(raw["mean_us"] / 1000, 3),
        },
        "tool_wall_s": round(elapsed, 3),
        "processes": 1,
        "connections": raw["connections"],
        "timed_out": timed_out,
        "problems": problems,
        "raw": raw,
    }


# ------------------------------------------------------------------------------------------ h2load

_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
_CODES = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


@dataclass(frozen=True)
class GrpcSlot:
    """One in-flight slot: its own h2load process, body file and (optional) bearer token."""

    data_file: Path
    token: str | None


def run_h2load_fleet(
    h2load: str,
    *,
    url: str,
    slots: list[GrpcSlot],
    log_dir: Path,
    requests_per_slot: int | None = None,
    duration_s: float | None = None,
    timeout_s: float,
) -> dict[str, Any]:
    """Runs one `h2load -c1 -m1` per slot at once, either -n requests_per_slot or -D duration_s."""
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = []
    started = time.monotonic()
    for index, slot in enumerate(slots):
        log_file = log_dir / f"slot-{index}.log"
        log_file.unlink(missing_ok=True)
        command = [
            h2load,
            "-c1",
            "-m1",
            "-t1",
            "-d",
            str(slot.data_file),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--log-file",
            str(log_file),
        ]
        if slot.token is not None:
            command += ["-H", f"authorization: Bearer {slot.token}"]
        if requests_per_slot is not None:
            command += ["-n", str(requests_per_slot)]
        else:
            command += ["-D", f"{duration_s}"]
        command.append(url)
        processes.append((_spawn(command), log_file))
    deadline = started + timeout_s
    totals = {"done": 0, "succeeded": 0, "failed": 0, "errored": 0, "timeout": 0, "2xx": 0, "non_2xx": 0}
    durations: list[int] = []
    first_start, last_end = math.inf, 0.0
    timed_out = False
    problems = []
    for process, log_file in processes:
        out, err, killed = _reap(process, deadline)
        timed_out |= killed
        requests, codes = _REQUESTS.search(out), _CODES.search(out)
        if requests is None or codes is None:
            problems.append(f"h2load printed no summary: {(err or out).strip()[-300:]}")
            continue
        _, _, done, succeeded, failed, errored, timeouts = map(int, requests.groups())
        ok2, c3, c4, c5 = map(int, codes.groups())
        totals["done"] += done
        totals["succeeded"] += succeeded
        totals["failed"] += failed
        totals["errored"] += errored
        totals["timeout"] += timeouts
        totals["2xx"] += ok2
        totals["non_2xx"] += c3 + c4 + c5
        if log_file.exists():
            for line in log_file.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) < 3:
                    continue
                start_us, duration_us = int(parts[0]), int(parts[2])
                durations.append(duration_us)
                first_start = min(first_start, start_us / 1e6)
                last_end = max(last_end, (start_us + duration_us) / 1e6)
    elapsed = time.monotonic() - started
    durations.sort()
    window = (last_end - first_start) if durations else elapsed
    completed = len(durations)
    return {
        "tool": "h2load",
        "requests": completed,
        "ok": totals["2xx"],
        "non_2xx": totals["non_2xx"],
        # "failed" also counts 4xx/5xx answers; errored and timed-out requests got no answer at all.
        "socket_errors": totals["errored"] + totals["timeout"],
        "duration_s": round(window, 3),
        "rps": round(completed / window, 1) if window > 0 else 0.0,
        "latency_ms": {
            "p50": _ms(percentile(durations, 50)),
            "p90": _ms(percentile(durations, 90)),
            "p99": _ms(percentile(durations, 99)),
            "max": _ms(durations[-1] if durations else None),
            "mean": round(sum(durations) / len(durations) / 1000, 3) if durations else None,
        },
        "tool_wall_s": round(elapsed, 3),
        "processes": len(slots),
        "requests_per_slot": requests_per_slot,
        "timed_out": timed_out,
        "h2load": totals,
        "problems": problems,
    }


def _ms(us: int | None) -> float | None:
    return None if us is None else us / 1000
