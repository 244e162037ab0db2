"""One scenario on a running stack: the warm-up, the measured runs (the load tool, CPU and memory of
every process, Envoy's rate-limit counters, the superlikes written) and the checks of each run."""

from __future__ import annotations

import argparse
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import loadgen, procstat, reads, seeding
from bench.run_summary import summarize_runs
from bench.scenarios import Scenario

BENCH_DIR = Path(__file__).resolve().parent
SUPERLIKE_METHOD = "/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike"
HEALTH_METHOD = "/grpc.health.v1.Health/Check"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Inputs:
    """What the load tools read, written once per run to bench/.work."""

    tokens: list[str]  # one per seeded sender, in the world's order
    token_files: dict[int, Path]  # callers -> the first `callers` tokens, one a line
    spread_streams_file: Path
    hot_stream_file: Path
    read_paths: dict[str, Path]
    frame_files: dict[str, Path]  # h2load: stream id (or "health") -> one gRPC frame
    frame_lists: dict[str, Path]  # grpc_load.mjs: spread | hot | health -> base64 frames, one a line


@dataclass
class Context:
    args: argparse.Namespace
    tools: dict[str, str]  # wrk, h2load, node -> path
    world: seeding.World
    inputs: Inputs
    results: dict[str, Any]
    work: Path
    stack: Any = None
    sampler: procstat.RssSampler | None = None
    # The PostgreSQL processes whose CPU counts (None: SQLite, or PostgreSQL on another machine).
    postgres_scope: procstat.PostgresScope | None = None
    invocation: int = 0
    problems: list[str] = field(default_factory=list)

    def callers(self, scenario: Scenario) -> int:
        return scenario.callers or self.args.callers_list[0]


# How long the superlike count must stay unchanged before the calls wrk left in flight count as
# finished: at least this, and at least the slowest call of the previous run (a server that stalls
# for half a second finishes its calls half a second late), at most the cap. The gRPC tools return
# only when every call they started has been answered, so nothing of theirs is in flight.
QUIET_MIN_S = 0.2
QUIET_MAX_S = 3.0


def quiet_window(result: dict[str, Any] | None) -> float:
    if result is None or result.get("tool") != "wrk":
        return QUIET_MIN_S
    slowest = result.get("latency_ms", {}).get("max") or 0.0
    return min(QUIET_MAX_S, max(QUIET_MIN_S, slowest / 1000))


def wait_until_stable(
    counter: seeding.SuperlikeCounter | None,
    quiet_s: float = QUIET_MIN_S,
    timeout: float = 15.0,
    key_prefix: str | None = None,
) -> int:
    """The superlike count (of those whose idempotency key starts with `key_prefix`, if given) once
    the server has finished what was in flight when the tool stopped: the first count that stays the
    same for `quiet_s`."""
    if counter is None:
        return 0
    count = counter.count if key_prefix is None else lambda: counter.count_with_key_prefix(key_prefix)
    previous = count()
    unchanged_since = time.monotonic()
    deadline = unchanged_since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        current = count()
        if current != previous:
            previous, unchanged_since = current, time.monotonic()
        elif time.monotonic() - unchanged_since >= quiet_s:
            return current
    return previous


def drive(ctx: Context, scenario: Scenario, *, seconds: int, requests_per_slot: int | None) -> dict[str, Any]:
    """One invocation of the load tool for the scenario (a warm-up or a measured run)."""
    stack, inputs = ctx.stack, ctx.inputs
    ctx.invocation += 1
    tokens_file = inputs.token_files[ctx.callers(scenario)]
    # The no-op gets exactly the load of `spread`: the same script, tokens, streams and keys.
    workload = "spread" if scenario.workload == "noop" else scenario.workload
    if scenario.transport == "rest-envoy":
        if scenario.reads:
            mode, targets, key_prefix = "get", inputs.read_paths[workload], "-"
        else:
            mode = workload
            targets = inputs.hot_stream_file if mode == "hot" else inputs.spread_streams_file
            key_prefix = "-" if ctx.args.rest_keys == "none" else f"b{int(time.time())}i{ctx.invocation}"
        result = loadgen.run_wrk(
            ctx.tools["wrk"],
            url=stack.http_url,
            script=BENCH_DIR / "superlike.lua",
            script_args=[str(tokens_file), str(targets), mode, key_prefix],
            connections=scenario.concurrency,
            duration_s=seconds,
        )
        if key_prefix != "-":
            # superlike.lua keys every request "<prefix>-<thread>-<n>": this run's superlikes are
            # told apart from calls an earlier run left in flight.
            result["key_prefix"] = f"{key_prefix}-"
        return result
    port = stack.config.grpc_port if scenario.transport == "grpc-direct" else stack.config.http_port
    method = HEALTH_METHOD if workload == "health" else SUPERLIKE_METHOD
    # Every invocation moves on to other senders.
    offset = ctx.invocation * scenario.concurrency
    if ctx.args.grpc_tool == "node":
        return loadgen.run_grpc_load(
            ctx.tools["node"],
            target=f"http://127.0.0.1:{port}",
            method_path=method,
            frames_file=inputs.frame_lists[workload],
            tokens_file=None if workload == "health" else tokens_file,
            token_offset=offset,
            concurrency=scenario.concurrency,
            connections=ctx.args.grpc_connections,
            duration_s=seconds,
            config_file=ctx.work / "grpc-load.json",
        )
    return _drive_h2load(
        ctx, scenario, workload, f"http://127.0.0.1:{port}{method}", offset, seconds, requests_per_slot
    )


def _drive_h2load(
    ctx: Context,
    scenario: Scenario,
    workload: str,
    url: str,
    offset: int,
    seconds: int,
    requests_per_slot: int | None,
) -> dict[str, Any]:
    frames, world = ctx.inputs.frame_files, ctx.world
    if workload == "health":
        slots = [loadgen.GrpcSlot(frames["health"], None)] * scenario.concurrency
    else:
        # Within one invocation, no two slots share a sender.
        senders, streams = ctx.callers(scenario), world.stream_ids
        slots = [
            loadgen.GrpcSlot(
                frames[world.hot_stream_id if workload == "hot" else streams[(offset + i) % len(streams)]],
                ctx.inputs.tokens[(offset + i) % senders],
            )
            for i in range(scenario.concurrency)
        ]
    return loadgen.run_h2load_fleet(
        ctx.tools["h2load"],
        url=url,
        slots=slots,
        log_dir=ctx.work / "h2load",
        requests_per_slot=requests_per_slot,
        duration_s=None if requests_per_slot else seconds,
        timeout_s=max(3.0 * ctx.args.duration, ctx.args.duration + 20.0),
    )


def rate_limited_so_far(stack: Any) -> int:
    """Requests Envoy's per-caller limit refused so far (every local rate limit's counter, summed)."""
    url = f"http://127.0.0.1:{stack.config.admin_port}/stats?filter=http_local_rate_limit\\.rate_limited$"
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(int(line.rsplit(":", 1)[1]) for line in lines if ":" in line)


def measure(
    ctx: Context,
    scenario: Scenario,
    counter: seeding.SuperlikeCounter | None,
    rate: float | None,
    quiet_s: float = QUIET_MIN_S,
) -> dict[str, Any]:
    args, stack, sampler = ctx.args, ctx.stack, ctx.sampler
    assert sampler is not None
    per_slot = None
    if scenario.transport != "rest-envoy" and args.grpc_tool == "h2load":
        # A fixed request count, so every request completes and the DB count check is exact.
        per_slot = max(1, round((rate or 1.0) * args.duration / scenario.concurrency))
    # Settled first: calls cut off at the end of the warm-up (or of a wrk run) may still commit.
    before = wait_until_stable(counter, quiet_s)
    window_start = sampler.now()
    postgres = ctx.postgres_scope if scenario.db == "postgres" else None
    cpu_before = procstat.snapshot(stack.server.pid, stack.envoy.pid, postgres)
    limited_before = rate_limited_so_far(stack)
    result = drive(ctx, scenario, seconds=args.duration, requests_per_slot=per_slot)
    cpu_after = procstat.snapshot(stack.server.pid, stack.envoy.pid, postgres)
    # The load stays under every caller's limit (round-robin over thousands of senders, well under a
    # human's 5/s each); a refused request would be a bench that measures the limiter instead.
    result["rate_limited"] = rate_limited_so_far(stack) - limited_before
    result["edge_rate_limit"] = stack.config.envoy_overrides or "product default"
    result["callers"] = ctx.callers(scenario)
    window_end = sampler.now()
    quiet_after = max(quiet_s, quiet_window(result))
    if counter is not None and "key_prefix" in result:
        # Exact whatever the server's stalls: a call the previous run left in flight may commit now,
        # but it carries that run's keys.
        written = wait_until_stable(counter, quiet_after, key_prefix=result["key_prefix"])
    else:
        written = wait_until_stable(counter, quiet_after) - before
    cpu = procstat.cpu_delta(cpu_before, cpu_after)
    result["cpu_s"] = cpu
    wall = cpu["wall_s"] or 1.0
    result["cpu_cores"] = {k: (None if v is None else round(v / wall, 3)) for k, v in cpu.items() if k != "wall_s"}
    result["cpu_ms_per_request"] = {
        k: (None if v is None or not result["requests"] else round(1000 * v / result["requests"], 3))
        for k, v in cpu.items()
        if k != "wall_s"
    }
    result["machine_cores"] = procstat.machine_cores(cpu_before, cpu_after)
    result["memory"] = sampler.window(window_start, window_end)
    result["superlikes_written"] = written
    result["problems"] = _problems(scenario, result, written, counted=counter is not None)
    return result


def _problems(scenario: Scenario, result: dict[str, Any], written: int, *, counted: bool) -> list[str]:
    problems = list(result.pop("problems", []))
    errors = result["non_2xx"] if scenario.expected_status == 200 else result["ok"]
    if errors or result["socket_errors"]:
        problems.append(f"{errors} unexpected statuses, {result['socket_errors']} socket errors")
    if result["rate_limited"]:
        problems.append(f"{result['rate_limited']} requests were refused by the edge's per-caller rate limit")
    if result.get("timed_out"):
        problems.append("the load tool did not finish in time and was stopped")
    if result["requests"] == 0:
        problems.append("no request completed")
    if not counted:
        return problems
    if not scenario.writes:
        if written:
            problems.append(f"{written} superlikes written by a scenario that must not write")
    elif result["tool"] != "wrk":
        # Every gRPC call started has finished: the database says which really succeeded.
        if written != result["ok"]:
            problems.append(f"{result['ok']} gRPC calls answered OK but {written} superlikes were written")
    elif not result["ok"] <= written <= result["ok"] + scenario.concurrency:
        # wrk stops mid-flight: up to `concurrency` requests may be written without being counted.
        problems.append(f"{result['ok']} REST calls answered 2xx but {written} superlikes were written")
    return problems


def run_scenario(
    ctx: Context,
    scenario: Scenario,
    counter: seeding.SuperlikeCounter | None,
    *,
    runs: int | None = None,
    pair: str | None = None,
) -> dict[str, Any]:
    """The warm-up, then `runs` measured runs (default --runs), each tagged with `pair` if given."""
    args = ctx.args
    total = args.runs if runs is None else runs
    if scenario.reads:
        # One call first: a scenario that only measured errors or empty pages would look fast.
        problem = reads.probe(ctx.stack.http_url, scenario.workload, ctx.world.stream_ids[0], ctx.inputs.tokens[0])
        if problem:
            ctx.problems.append(f"{scenario.name}: {problem}")
    rate, previous = None, None
    if args.warmup:
        previous = drive(ctx, scenario, seconds=args.warmup, requests_per_slot=None)
        rate = previous["rps"]
    measured = []
    for index in range(total):
        run = measure(ctx, scenario, counter, rate, quiet_window(previous))
        rate, previous = run["rps"] or rate, run
        if pair is not None:
            run["pair"] = pair
        measured.append(run)
        lat, cores = run["latency_ms"], run["cpu_cores"]
        log(
            f"{scenario.name}{f' [{pair}]' if pair else ''} run {index + 1}/{total}: {run['rps']:.0f} req/s, p50 {lat['p50']} p99 {lat['p99']} ms, "
            f"errors {run['non_2xx'] + run['socket_errors']}, rate-limited {run['rate_limited']}, cores server {cores['server']} envoy {cores['envoy']}"
            f" pg {cores['postgres']} tool {cores['load_tool']}"
            + (f"  PROBLEMS: {run['problems']}" if run["problems"] else "")
        )
        ctx.problems.extend(f"{scenario.name} run {pair or index + 1}: {p}" for p in run["problems"])
    return {
        "name": scenario.name,
        "db": scenario.db,
        "transport": scenario.transport,
        "workload": scenario.workload,
        "concurrency": scenario.concurrency,
        "edge": scenario.edge,
        "callers": ctx.callers(scenario),
        "callers_extra": scenario.callers is not None,
        "expected_status": scenario.expected_status,
        "ceiling": None if scenario.db == "baseline" else scenario.ceiling,
        "noop": None if scenario.db == "baseline" and scenario.workload != "invalid" else scenario.noop,
        "runs": measured,
        "summary": summarize_runs(measured),
    }
