"""`make bench`: requests/s, latency, CPU and memory of the superlike calls through the real stack.

Starts `livechat serve` + Envoy (devstack.stack.Stack) on SQLite and on PostgreSQL, seeds thousands
of senders, and drives SendSuperlike over REST through Envoy (wrk) and gRPC through Envoy and direct
(h2load), on many streams ("spread") and on one stream ("hot"), then reads back over REST a history
page ("list") and the top supporters ("top"), at several concurrencies. The gRPC health check, the
cheapest call that touches no database, is measured in the same run as the ceiling every figure is
compared with. After each database the money audit (`livechat admin audit`) must pass.

Results: bench/results/<timestamp>.json, and bench/results/latest.md and latest.png when the run
covers the whole default matrix (a partial run's table and chart go beside its JSON instead).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen, procstat, reads, reporting, scenarios, seeding, toolchain  # noqa: E402
from bench.scenarios import Scenario  # noqa: E402

WORK = BENCH_DIR / ".work"
RESULTS = BENCH_DIR / "results"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/livechat_bench"
SUPERLIKE_METHOD = "/allmine.livestream.chat.v1.LiveStreamChat/SendSuperlike"
HEALTH_METHOD = "/grpc.health.v1.Health/Check"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Context:
    args: argparse.Namespace
    wrk: str
    h2load: str
    world: seeding.World
    tokens: list[str]
    tokens_file: Path
    spread_streams_file: Path
    hot_stream_file: Path
    read_paths: dict[str, Path]
    frames: dict[str, Path]
    results: dict[str, Any]
    stack: Any = None
    sampler: procstat.RssSampler | None = None
    invocation: int = 0
    problems: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------- preparation


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 s per scenario, 1 run, 1 s warm-up")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per scenario; medians are quoted (3)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds before each scenario (1)")
    parser.add_argument(
        "--concurrency",
        default=",".join(map(str, scenarios.CONCURRENCY)),
        help="comma-separated in-flight requests (16,64)",
    )
    parser.add_argument("--databases", default=",".join(scenarios.DATABASES), help="sqlite,postgres")
    parser.add_argument("--transports", default=",".join(scenarios.TRANSPORTS))
    parser.add_argument(
        "--workloads",
        default=",".join(scenarios.WORKLOADS),
        help="spread,hot (SendSuperlike), list,top (reads, REST only); default all four",
    )
    parser.add_argument("--senders", type=int, default=2000, help="seeded senders, each with 10^9 coins (2000)")
    parser.add_argument("--streams", type=int, default=200, help="live streams of the spread workload (200)")
    parser.add_argument(
        "--rest-keys",
        choices=["unique", "none"],
        default="unique",
        help="REST Idempotency-Key: a new one per request (default) or none",
    )
    parser.add_argument(
        "--with-error-path",
        action="store_true",
        help="also measure REST with a malformed stream id (400 from the server, no database)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the health-check ceiling")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="benchmark database, dropped and recreated (env BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--postgres-admin-db", default="postgres", help="database to connect to for DROP/CREATE")
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for `livechat serve`, e.g. LIVECHAT_DB_POOL_SIZE=20",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG (no matplotlib needed)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.runs, args.warmup = 2, 1, 1
    args.concurrency_list = [int(c) for c in args.concurrency.split(",") if c]
    args.database_list = [d for d in args.databases.split(",") if d]
    args.transport_list = [t for t in args.transports.split(",") if t]
    args.workload_list = [w for w in args.workloads.split(",") if w]
    for value, allowed, what in (
        (args.database_list, set(scenarios.DATABASES), "--databases"),
        (args.transport_list, set(scenarios.TRANSPORTS), "--transports"),
        (args.workload_list, set(scenarios.WORKLOADS), "--workloads"),
    ):
        unknown = set(value) - allowed
        if unknown:
            parser.error(f"{what}: unknown {sorted(unknown)}; choose from {sorted(allowed)}")
    if set(args.workload_list) <= set(scenarios.READ_WORKLOADS) and not set(args.transport_list) & set(
        scenarios.READ_TRANSPORTS
    ):
        parser.error(f"--workloads {args.workloads} run over {', '.join(scenarios.READ_TRANSPORTS)} only")
    if args.duration < 1 or args.runs < 1 or args.warmup < 0 or not args.concurrency_list:
        parser.error("--duration and --runs must be >= 1, --warmup >= 0, --concurrency non-empty")
    server_env = {}
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--server-env {item!r}: expected KEY=VALUE")
        server_env[key] = value
    args.server_env_map = server_env
    return args


def write_inputs(world: seeding.World, tokens: list[str]) -> tuple[Path, Path, Path, dict[str, Path], dict[str, Path]]:
    from grpc_health.v1 import health_pb2

    from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2

    WORK.mkdir(parents=True, exist_ok=True)
    tokens_file = WORK / "tokens.txt"
    tokens_file.write_text("\n".join(tokens) + "\n")
    spread = WORK / "streams-spread.txt"
    spread.write_text("\n".join(world.stream_ids) + "\n")
    hot = WORK / "streams-hot.txt"
    hot.write_text(world.hot_stream_id + "\n")
    read_paths = {
        workload: reads.write_paths(workload, world.stream_ids, WORK) for workload in scenarios.READ_WORKLOADS
    }
    frames_dir = WORK / "frames"
    frames_dir.mkdir(exist_ok=True)
    frames: dict[str, Path] = {}
    for stream in [*world.stream_ids, world.hot_stream_id]:
        path = frames_dir / f"{stream}.bin"
        path.write_bytes(loadgen.grpc_frame(chat_pb2.SendSuperlikeRequest(stream_id=stream).SerializeToString()))
        frames[stream] = path
    health = frames_dir / "health.bin"
    health.write_bytes(loadgen.grpc_frame(health_pb2.HealthCheckRequest().SerializeToString()))
    frames["health"] = health
    return tokens_file, spread, hot, read_paths, frames


# --------------------------------------------------------------------------------------- measuring


def wait_until_stable(counter: seeding.SuperlikeCounter, timeout: float = 5.0) -> int:
    """The superlike count once the server has finished what was in flight when the tool stopped."""
    previous = counter.count()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        current = counter.count()
        if current == previous:
            return current
        previous = current
    return previous


def drive(ctx: Context, scenario: Scenario, *, seconds: int, requests_per_slot: int | None) -> dict[str, Any]:
    """One invocation of the load tool for the scenario (a warm-up or a measured run)."""
    stack = ctx.stack
    ctx.invocation += 1
    if scenario.transport == "rest-envoy":
        if scenario.reads:
            mode, targets, key_prefix = "get", ctx.read_paths[scenario.workload], "-"
        else:
            mode = scenario.workload
            targets = ctx.hot_stream_file if mode == "hot" else ctx.spread_streams_file
            key_prefix = "-" if ctx.args.rest_keys == "none" else f"b{int(time.time())}i{ctx.invocation}"
        return loadgen.run_wrk(
            ctx.wrk,
            url=stack.http_url,
            script=BENCH_DIR / "superlike.lua",
            script_args=[str(ctx.tokens_file), str(targets), mode, key_prefix],
            connections=scenario.concurrency,
            duration_s=seconds,
        )
    port = stack.config.grpc_port if scenario.transport == "grpc-direct" else stack.config.http_port
    if scenario.workload == "health":
        url = f"http://127.0.0.1:{port}{HEALTH_METHOD}"
        slots = [loadgen.GrpcSlot(ctx.frames["health"], None)] * scenario.concurrency
    else:
        url = f"http://127.0.0.1:{port}{SUPERLIKE_METHOD}"
        # Every invocation moves on to other senders; within one, no two slots share a sender.
        offset = ctx.invocation * scenario.concurrency
        senders, streams = len(ctx.tokens), ctx.world.stream_ids
        slots = [
            loadgen.GrpcSlot(
                ctx.frames[
                    ctx.world.hot_stream_id if scenario.workload == "hot" else streams[(offset + i) % len(streams)]
                ],
                ctx.tokens[(offset + i) % senders],
            )
            for i in range(scenario.concurrency)
        ]
    return loadgen.run_h2load_fleet(
        ctx.h2load,
        url=url,
        slots=slots,
        log_dir=WORK / "h2load",
        requests_per_slot=requests_per_slot,
        duration_s=None if requests_per_slot else seconds,
        timeout_s=max(3.0 * ctx.args.duration, ctx.args.duration + 20.0),
    )


def edge_rate_limit(transports: list[str]) -> dict[str, Any]:
    """The edge's per-caller limit for this run: the product's own (a person's pace) unless gRPC goes
    through Envoy. REST spreads the load round-robin over every sender (2,000 by default: at 2,000
    req/s each sends 1 a second, under the 5/s limit), but h2load pins one sender to each of its
    connections, dozens of calls a second each: those runs raise the limit out of the way and say so."""
    if "grpc-envoy" in transports:
        return {"send_burst": 100_000, "send_per_second": 100_000}
    return {}


def rate_limited_so_far(stack: Any) -> int:
    """Requests Envoy's per-caller limit refused so far (every local rate limit's counter, summed)."""
    url = f"http://127.0.0.1:{stack.config.admin_port}/stats?filter=http_local_rate_limit\\.rate_limited$"
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(int(line.rsplit(":", 1)[1]) for line in lines if ":" in line)


def measure(ctx: Context, scenario: Scenario, counter: seeding.SuperlikeCounter, rate: float | None) -> dict[str, Any]:
    args, stack, sampler = ctx.args, ctx.stack, ctx.sampler
    assert sampler is not None
    per_slot = None
    if scenario.transport != "rest-envoy":
        # A fixed request count, so every request completes and the DB count check is exact.
        per_slot = max(1, round((rate or 1.0) * args.duration / scenario.concurrency))
    # Settled first: calls cut off at the end of the warm-up (or of a wrk run) may still commit.
    before = wait_until_stable(counter)
    window_start = sampler.now()
    cpu_before = procstat.snapshot(stack.server.pid, stack.envoy.pid, scenario.db == "postgres")
    limited_before = rate_limited_so_far(stack)
    result = drive(ctx, scenario, seconds=args.duration, requests_per_slot=per_slot)
    cpu_after = procstat.snapshot(stack.server.pid, stack.envoy.pid, scenario.db == "postgres")
    # The load stays under every caller's limit (REST: 2,000 senders round-robin, well under a
    # human's 5/s each); a refused request would be a bench that measures the limiter instead.
    result["rate_limited"] = rate_limited_so_far(stack) - limited_before
    result["edge_rate_limit"] = stack.config.envoy_overrides or "product default"
    window_end = sampler.now()
    after = wait_until_stable(counter)
    written = after - before
    cpu = procstat.cpu_delta(cpu_before, cpu_after)
    result["cpu_s"] = cpu
    wall = cpu["wall_s"] or 1.0
    result["cpu_cores"] = {k: (None if v is None else round(v / wall, 3)) for k, v in cpu.items() if k != "wall_s"}
    result["cpu_ms_per_request"] = {
        k: (None if v is None or not result["requests"] else round(1000 * v / result["requests"], 3))
        for k, v in cpu.items()
        if k != "wall_s"
    }
    result["memory"] = sampler.window(window_start, window_end)
    result["superlikes_written"] = written
    problems = list(result.pop("problems", []))
    expected_ok = scenario.expected_status == 200
    errors = result["non_2xx"] if expected_ok else result["ok"]
    if errors or result["socket_errors"]:
        problems.append(f"{errors} unexpected statuses, {result['socket_errors']} socket errors")
    if result["rate_limited"]:
        problems.append(f"{result['rate_limited']} requests were refused by the edge's per-caller rate limit")
    if result.get("timed_out"):
        problems.append("the load tool did not finish in time and was stopped")
    if result["requests"] == 0:
        problems.append("no request completed")
    if not scenario.writes:
        if written:
            problems.append(f"{written} superlikes written by a scenario that must not write")
    elif result["tool"] == "h2load":
        # h2load sees HTTP 200 for gRPC errors too; the database says which calls really succeeded.
        if written != result["ok"]:
            problems.append(f"{result['ok']} gRPC calls answered 200 but {written} superlikes were written")
    elif not result["ok"] <= written <= result["ok"] + scenario.concurrency:
        # wrk stops mid-flight: up to `concurrency` requests may be written without being counted.
        problems.append(f"{result['ok']} REST calls answered 2xx but {written} superlikes were written")
    result["problems"] = problems
    return result


def run_scenario(ctx: Context, scenario: Scenario, counter: seeding.SuperlikeCounter) -> dict[str, Any]:
    args = ctx.args
    if scenario.reads:
        # One call first: a scenario that only measured errors or empty pages would look fast.
        problem = reads.probe(ctx.stack.http_url, scenario.workload, ctx.world.stream_ids[0], ctx.tokens[0])
        if problem:
            ctx.problems.append(f"{scenario.name}: {problem}")
    rate = None
    if args.warmup:
        warm = drive(ctx, scenario, seconds=args.warmup, requests_per_slot=None)
        rate = warm["rps"]
    runs = []
    for index in range(args.runs):
        run = measure(ctx, scenario, counter, rate)
        rate = run["rps"] or rate
        runs.append(run)
        lat, cores = run["latency_ms"], run["cpu_cores"]
        log(
            f"{scenario.name} run {index + 1}/{args.runs}: {run['rps']:.0f} req/s, p50 {lat['p50']} p99 {lat['p99']} ms, "
            f"errors {run['non_2xx'] + run['socket_errors']}, rate-limited {run['rate_limited']}, cores server {cores['server']} envoy {cores['envoy']}"
            f" pg {cores['postgres']} tool {cores['load_tool']}"
            + (f"  PROBLEMS: {run['problems']}" if run["problems"] else "")
        )
        ctx.problems.extend(f"{scenario.name} run {index + 1}: {p}" for p in run["problems"])
    return {
        "name": scenario.name,
        "db": scenario.db,
        "transport": scenario.transport,
        "workload": scenario.workload,
        "concurrency": scenario.concurrency,
        "expected_status": scenario.expected_status,
        "ceiling": None if scenario.db == "baseline" else scenario.ceiling,
        "runs": runs,
        "summary": reporting.summarize_runs(runs),
    }


# ------------------------------------------------------------------------------------------ phases


AUDIT_TIMEOUT_S = 300


def audit(database_url: str) -> dict[str, Any]:
    livechat = Path(sys.executable).parent / "livechat"
    try:
        result = subprocess.run(
            [str(livechat), "admin", "audit"],
            env=dict(os.environ, DATABASE_URL=database_url),
            capture_output=True,
            text=True,
            timeout=AUDIT_TIMEOUT_S,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        # A failed check like any other: the run still finishes, records it and exits non-zero.
        return {"exit_code": None, "report": {}, "stderr": f"the audit did not finish within {AUDIT_TIMEOUT_S} s"}
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        report = {"stdout": result.stdout[-2000:]}
    return {"exit_code": result.returncode, "report": report, "stderr": result.stderr[-2000:]}


def run_phase(ctx: Context, db: str, scenarios: list[Scenario]) -> None:
    from devstack.ports import free_port
    from devstack.stack import Stack, StackConfig
    from server.auth.local_keys import generate_keys

    args = ctx.args
    if db == "sqlite":
        database_url = seeding.reset_sqlite(WORK / "livechat_bench.db")
        shown_url = database_url
    else:
        try:
            database_url = asyncio.run(seeding.reset_postgres(args.postgres_url, args.postgres_admin_db))
        except Exception as error:  # noqa: BLE001 (any failure here means: no PostgreSQL to test)
            raise SystemExit(
                f"PostgreSQL at {args.postgres_url} is not usable ({type(error).__name__}: {error}); "
                "set --postgres-url / BENCH_POSTGRES_URL or pass --databases sqlite"
            ) from error
        from sqlalchemy.engine import make_url

        shown_url = make_url(database_url).render_as_string(hide_password=True)
    log(f"{db}: seeding {len(ctx.world.sender_ids)} senders, {len(ctx.world.stream_ids) + 1} streams")
    seed_info = asyncio.run(seeding.seed(database_url, ctx.world))
    counter = seeding.SuperlikeCounter(database_url)
    phase: dict[str, Any] = {"url": shown_url, "version": counter.server_version(), "seed": seed_info}
    ctx.results["databases"][db] = phase
    _, jwks_path = generate_keys(WORK / "keys")
    config = StackConfig(
        workdir=WORK / f"stack-{db}",
        database_url=database_url,
        jwks_path=jwks_path,
        grpc_port=free_port(),
        http_port=free_port(),
        admin_port=free_port(),
        extra_server_env=dict(args.server_env_map),
        envoy_overrides=edge_rate_limit(args.transport_list),
    )
    for log_file in ("server.log", "envoy.log"):
        (config.workdir / log_file).unlink(missing_ok=True)
    ctx.stack = Stack(config)
    # The server loads its code when it starts: fingerprint what this phase measures.
    phase["code_fingerprint"] = code_fingerprint()
    log(f"{db}: starting livechat serve + Envoy (logs in {config.workdir}), code {phase['code_fingerprint']}")
    ctx.stack.start()
    ctx.sampler = procstat.RssSampler(ctx.stack.server.pid, ctx.stack.envoy.pid)
    ctx.sampler.start()
    phase_start = ctx.sampler.now()
    try:
        for scenario in scenarios:
            ctx.results["scenarios"].append(run_scenario(ctx, scenario, counter))
            save(ctx)
    finally:
        ctx.sampler.stop()
        phase_end = ctx.sampler.now()
        memory = ctx.sampler.window(phase_start, phase_end)
        phase["memory"] = memory
        phase["rss_timeline"] = [list(s) for s in ctx.sampler.samples]
        ctx.stack.stop()
        ctx.stack = None
        server_log = (config.workdir / "server.log").read_text(errors="replace").splitlines()
        phase["server_log_errors"] = sum(1 for line in server_log if " ERROR " in line)
        phase["server_log_error_samples"] = [line for line in server_log if " ERROR " in line][:5]
    total = counter.count()
    phase["superlikes_total"] = total
    log(
        f"{db}: server RSS {kb(memory['server_rss_start_kb'])} at start, {kb(memory['server_rss_end_kb'])} at end, "
        f"peak {kb(memory['server_rss_peak_kb'])}; {total} superlikes written; running the audit"
    )
    phase["audit"] = audit(database_url)
    report = phase["audit"]["report"]
    if phase["audit"]["exit_code"] != 0 or not report.get("ok"):
        ctx.problems.append(f"{db}: the money audit failed: {json.dumps(report)[:1000]} {phase['audit']['stderr']}")
    elif report.get("superlikes") != total:
        ctx.problems.append(f"{db}: the audit saw {report.get('superlikes')} superlikes, the count {total}")
    log(f"{db}: audit exit {phase['audit']['exit_code']}: {json.dumps(report)[:300]}")


def code_fingerprint() -> str:
    """sha256 over the server, generated code and Envoy config that were measured (the tree may change)."""
    digest = hashlib.sha256()
    for directory, pattern in ((ROOT / "server", "*.py"), (ROOT / "gen", "*"), (ROOT / "envoy", "*")):
        for path in sorted(directory.rglob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def kb(value: int | None) -> str:
    return "?" if value is None else f"{value / 1024:.0f} MB"


def save(ctx: Context) -> Path:
    path = ctx.results["path"]
    Path(path).write_text(json.dumps({k: v for k, v in ctx.results.items() if k != "path"}, indent=1) + "\n")
    return Path(path)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        wrk = toolchain.ensure_binary("wrk", "wrk")
        h2load = toolchain.ensure_binary("h2load", "nghttp2-client")
        if not args.no_chart:
            toolchain.ensure_matplotlib()
    except toolchain.ToolError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2

    from cryptography.hazmat.primitives import serialization

    from devstack.stack import DEFAULT_AUDIENCE, DEFAULT_ISSUER
    from server.auth.local_keys import generate_keys

    key_path, _ = generate_keys(WORK / "keys")
    world = seeding.World.build(args.senders, args.streams)
    log(f"minting {args.senders} RS256 tokens")
    private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    total_s = (args.duration * args.runs + args.warmup) * 1.1
    tokens = seeding.mint_tokens(
        private_key, world, issuer=DEFAULT_ISSUER, audience=DEFAULT_AUDIENCE, ttl_seconds=int(3600 + 200 * total_s)
    )
    tokens_file, spread_file, hot_file, read_paths, frames = write_inputs(world, tokens)

    started = dt.datetime.now(dt.UTC)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "path": str(args.results_dir / f"{stamp}{'-quick' if args.quick else ''}.json"),
        "schema": 1,
        "mode": "quick" if args.quick else "full",
        "started_at": started.isoformat(timespec="seconds"),
        "settings": {
            "duration_s": args.duration,
            "runs": args.runs,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency_list,
            "databases": args.database_list,
            "transports": args.transport_list,
            "workloads": args.workload_list,
            "senders": args.senders,
            "streams": args.streams,
            "rest_idempotency_keys": args.rest_keys,
            "server_env": args.server_env_map,
            "price": seeding.SUPERLIKE_PRICE,
            "sender_coins": seeding.SENDER_COINS,
        },
        "machine": toolchain.machine_info(envoy=str(Path(sys.executable).parent / "envoy"), wrk=wrk, h2load=h2load),
        "code_fingerprint": code_fingerprint(),
        "databases": {},
        "scenarios": [],
    }
    ctx = Context(args, wrk, h2load, world, tokens, tokens_file, spread_file, hot_file, read_paths, frames, results)
    exit_code = 0
    try:
        for index, db in enumerate(args.database_list):
            phase: list[Scenario] = []
            if index == 0 and not args.no_baseline:
                # Same run, same machine state: the ceiling is measured next to what it bounds.
                phase += scenarios.baseline(args.concurrency_list, with_error_path=args.with_error_path)
            phase += scenarios.for_database(db, args.transport_list, args.workload_list, args.concurrency_list)
            run_phase(ctx, db, phase)
    except KeyboardInterrupt:
        log("interrupted: stopping everything this run started")
        results["interrupted"] = True
        exit_code = 130
    except SystemExit as error:
        print(f"bench: {error}", file=sys.stderr)
        results["error"] = str(error)
        exit_code = 2
    finally:
        loadgen.stop_all()
        if ctx.sampler is not None:
            ctx.sampler.stop()
        if ctx.stack is not None:
            ctx.stack.stop()
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["problems"] = ctx.problems
    results["ok"] = exit_code == 0 and not ctx.problems
    path = save(ctx)
    # latest.md/latest.png show the last run of the whole matrix; a partial run (a quick one, one
    # database, one workload) must not replace those figures, so its table and chart go beside its JSON.
    full = exit_code == 0 and scenarios.covers_default_matrix(
        databases=args.database_list,
        transports=args.transport_list,
        workloads=args.workload_list,
        concurrency=args.concurrency_list,
        quick=args.quick,
        baseline_included=not args.no_baseline,
    )
    report_stem = args.results_dir / "latest" if full else path.with_suffix("")
    markdown = reporting.write_markdown(json.loads(path.read_text()), report_stem.with_suffix(".md"), source=path)
    if not args.no_chart:
        reporting.write_chart(json.loads(path.read_text()), report_stem.with_suffix(".png"))
    print(markdown)
    log(
        f"results: {path}, {report_stem.with_suffix('.md')}"
        + ("" if args.no_chart else f", {report_stem.with_suffix('.png')}")
        + ("" if full else " (a partial run: latest.md and latest.png are left as they were)")
    )
    if ctx.problems:
        print("\nFAILED checks:\n  " + "\n  ".join(ctx.problems), file=sys.stderr)
        return exit_code or 1
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
