"""`make bench`: requests/s, latency, CPU and memory of the superlike calls through the real stack.

Starts `livechat serve` + Envoy (devstack.stack.Stack) on SQLite and on PostgreSQL, bulk-seeds
100,000 senders and 1,000,000 history superlikes, and drives SendSuperlike over REST through Envoy
(wrk) and gRPC through Envoy and direct (bench/grpc_load.mjs), on many streams ("spread") and on one
stream ("hot"), from 2,000 callers and again from 100,000, then reads back over REST a history page
("list") and the top supporters ("top"), at several concurrencies. The references are measured in
the same run: a no-op SendSuperlike server (bench/noop_server.py) behind the same rendered Envoy
config with the same load, and the gRPC health check of the real server. `--edge-variants` repeats
the no-op and the writes behind copies of the config without some filters. After each database the
money audit (`livechat admin audit`) must pass.

Results: bench/results/<timestamp>.json, and bench/results/latest.md and latest.png when the run
covers the whole default matrix (a partial run's table and chart go beside its JSON instead).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    edge_variants,
    loadgen,
    phases,
    reads,
    reporting,
    scenarios,
    seeding,
    tokens,
    toolchain,
)
from bench.measure import Context, Inputs, log  # noqa: E402
from bench.scenarios import Scenario  # noqa: E402

WORK = BENCH_DIR / ".work"
RESULTS = BENCH_DIR / "results"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/livechat_bench"
DEFAULT_SENDERS = 100_000
DEFAULT_HISTORY_PER_SENDER = 10


# ------------------------------------------------------------------------------------- preparation


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 s per scenario, 1 run, 1 s warm-up")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per scenario; medians are quoted (3)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds before each scenario (1)")
    parser.add_argument(
        "--paired",
        action="store_true",
        help="alternate the stacks: each of the --runs rounds runs the no-op twins once, then the "
        "database's scenarios once, and each run is divided by its twin's run of the same round",
    )
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
    parser.add_argument(
        "--senders",
        type=int,
        default=DEFAULT_SENDERS,
        help=f"seeded senders, each with 10^9 coins and a token ({DEFAULT_SENDERS})",
    )
    parser.add_argument(
        "--history-per-sender",
        type=int,
        default=DEFAULT_HISTORY_PER_SENDER,
        help=f"settled superlikes each sender has sent before the run ({DEFAULT_HISTORY_PER_SENDER})",
    )
    parser.add_argument(
        "--callers",
        default=",".join(map(str, scenarios.CALLERS)),
        help="distinct callers the load goes round (each <= --senders): every scenario uses the first, "
        "the write scenarios and the no-op through Envoy are repeated with each other one (2000,100000)",
    )
    parser.add_argument(
        "--callers-workloads",
        default=",".join(scenarios.CALLERS_WORKLOADS),
        help="write workloads repeated at the other --callers values (spread)",
    )
    parser.add_argument("--streams", type=int, default=200, help="live streams of the spread workload (200)")
    parser.add_argument(
        "--edge-variants",
        default=edge_variants.FULL,
        help=f"Envoy configs: full and copies without filters, e.g. full,no-lua,no-jwt,no-access-log "
        f"(known: {','.join(edge_variants.names())}; combine with +); each variant but full runs the "
        "no-op and the write workloads over --variant-transports",
    )
    parser.add_argument(
        "--variant-transports",
        default="rest-envoy",
        help="transports the edge variants are measured on (rest-envoy; grpc-envoy too if wanted)",
    )
    parser.add_argument(
        "--grpc-tool",
        choices=["node", "h2load"],
        default="node",
        help="gRPC load: one bench/grpc_load.mjs process (default) or one h2load process per call in flight",
    )
    parser.add_argument("--grpc-connections", type=int, default=4, help="HTTP/2 connections of grpc_load.mjs (4)")
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
    parser.add_argument("--no-baseline", action="store_true", help="skip the references (no-op and health check)")
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
        help="extra environment for `livechat serve` (and the no-op), e.g. LIVECHAT_DB_POOL_SIZE=20",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes of `livechat serve` and of the no-op (LIVECHAT_WORKERS; Envoy reaches each "
        "on its own Unix socket); more than one needs --databases postgres (1)",
    )
    parser.add_argument(
        "--server-args",
        default="",
        help="more arguments for `livechat serve` and the no-op alike",
    )
    parser.add_argument(
        "--noop-args", default=None, help="the no-op's arguments when they must differ from --server-args"
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG (no matplotlib needed)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.runs, args.warmup = 2, 1, 1
    split = lambda text: [item for item in text.split(",") if item]  # noqa: E731
    args.concurrency_list = [int(c) for c in split(args.concurrency)]
    args.database_list = split(args.databases)
    args.transport_list = split(args.transports)
    args.workload_list = split(args.workloads)
    args.callers_list = [int(c) for c in split(args.callers)] or [args.senders]
    args.callers_workload_list = split(args.callers_workloads)
    args.edge_list = split(args.edge_variants)
    args.variant_transport_list = split(args.variant_transports)
    for value, allowed, what in (
        (args.database_list, set(scenarios.DATABASES), "--databases"),
        (args.transport_list, set(scenarios.TRANSPORTS), "--transports"),
        (args.workload_list, set(scenarios.WORKLOADS), "--workloads"),
        (args.variant_transport_list, set(scenarios.ENVOY_TRANSPORTS), "--variant-transports"),
        (args.callers_workload_list, set(scenarios.WRITE_WORKLOADS), "--callers-workloads"),
    ):
        unknown = set(value) - allowed
        if unknown:
            parser.error(f"{what}: unknown {sorted(unknown)}; choose from {sorted(allowed)}")
    for edge in args.edge_list:
        try:
            edge_variants.check(edge)
        except edge_variants.UnknownVariant as error:
            parser.error(f"--edge-variants: {error}")
    if edge_variants.FULL in args.edge_list:
        args.edge_list.remove(edge_variants.FULL)
    args.edge_list.insert(0, edge_variants.FULL)  # every other figure is measured behind the full one
    if set(args.workload_list) <= set(scenarios.READ_WORKLOADS) and not set(args.transport_list) & set(
        scenarios.READ_TRANSPORTS
    ):
        parser.error(f"--workloads {args.workloads} run over {', '.join(scenarios.READ_TRANSPORTS)} only")
    if args.paired and args.no_baseline:
        parser.error("--paired alternates with the no-op: it cannot run with --no-baseline")
    if args.duration < 1 or args.runs < 1 or args.warmup < 0 or not args.concurrency_list:
        parser.error("--duration and --runs must be >= 1, --warmup >= 0, --concurrency non-empty")
    if args.workers > 1 and "sqlite" in args.database_list:
        parser.error("--workers above 1 runs on PostgreSQL only (SQLite is one process's): pass --databases postgres")
    if args.history_per_sender < 0 or args.grpc_connections < 1 or args.workers < 1:
        parser.error("--history-per-sender must be >= 0, --grpc-connections >= 1")
    if (
        max(args.callers_list) > args.senders
        or min(args.callers_list) < 1
        or len(set(args.callers_list)) != len(args.callers_list)
    ):
        parser.error(f"--callers {args.callers}: distinct values from 1 to --senders ({args.senders})")
    server_env = {}
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--server-env {item!r}: expected KEY=VALUE")
        server_env[key] = value
    args.server_env_map = server_env
    args.server_arg_list = tuple(shlex.split(args.server_args))
    args.noop_arg_list = args.server_arg_list if args.noop_args is None else tuple(shlex.split(args.noop_args))
    return args


def write_inputs(world: seeding.World, all_tokens: list[str], callers: list[int]) -> Inputs:
    """The load tools' inputs in bench/.work: token files per callers value, stream lists, request
    paths, gRPC frames (one file per stream for h2load, base64 lists for grpc_load.mjs)."""
    from grpc_health.v1 import health_pb2

    from allmine.livestream.chat.v1 import live_stream_chat_pb2 as chat_pb2

    WORK.mkdir(parents=True, exist_ok=True)
    token_files = {}
    for count in callers:
        token_files[count] = WORK / f"tokens-{count}.txt"
        token_files[count].write_text("\n".join(all_tokens[:count]) + "\n")
    spread = WORK / "streams-spread.txt"
    spread.write_text("\n".join(world.stream_ids) + "\n")
    hot = WORK / "streams-hot.txt"
    hot.write_text(world.hot_stream_id + "\n")
    read_paths = {
        workload: reads.write_paths(workload, world.stream_ids, WORK) for workload in scenarios.READ_WORKLOADS
    }
    frames_dir = WORK / "frames"
    frames_dir.mkdir(exist_ok=True)
    frame_of = {
        stream: loadgen.grpc_frame(chat_pb2.SendSuperlikeRequest(stream_id=stream).SerializeToString())
        for stream in [*world.stream_ids, world.hot_stream_id]
    }
    frame_of["health"] = loadgen.grpc_frame(health_pb2.HealthCheckRequest().SerializeToString())
    frame_files: dict[str, Path] = {}
    for name, frame in frame_of.items():
        frame_files[name] = frames_dir / f"{name}.bin"
        frame_files[name].write_bytes(frame)
    frame_lists = {
        "spread": loadgen.write_frames(frames_dir / "spread.b64", [frame_of[s] for s in world.stream_ids]),
        "hot": loadgen.write_frames(frames_dir / "hot.b64", [frame_of[world.hot_stream_id]]),
        "health": loadgen.write_frames(frames_dir / "health.b64", [frame_of["health"]]),
    }
    return Inputs(all_tokens, token_files, spread, hot, read_paths, frame_files, frame_lists)


def plan(
    args: argparse.Namespace,
) -> tuple[list[tuple[str, list[Scenario]]], dict[str, list[tuple[str, list[Scenario]]]]]:
    """The no-op phase's (edge, scenarios) and each database's, in the order they run."""
    extra_callers = args.callers_list[1:]
    noop_plan: list[tuple[str, list[Scenario]]] = []
    if not args.no_baseline:
        for edge in args.edge_list:
            full = edge == edge_variants.FULL
            transports = args.transport_list if full else args.variant_transport_list
            noop_plan.append(
                (edge, scenarios.noop(edge, transports, args.concurrency_list, extra_callers if full else []))
            )
    database_plans: dict[str, list[tuple[str, list[Scenario]]]] = {}
    for index, db in enumerate(args.database_list):
        first: list[Scenario] = []
        if index == 0 and not args.no_baseline:
            # Same run, same machine state: the health check is measured next to what it bounds.
            first += scenarios.baseline(args.concurrency_list, with_error_path=args.with_error_path)
        first += scenarios.for_database(
            db,
            args.transport_list,
            args.workload_list,
            args.concurrency_list,
            extra_callers,
            args.callers_workload_list,
        )
        database_plans[db] = [(edge_variants.FULL, first)] + [
            (
                edge,
                scenarios.edge_variant(
                    db, edge, args.variant_transport_list, args.workload_list, args.concurrency_list
                ),
            )
            for edge in args.edge_list[1:]
        ]
    return noop_plan, database_plans


# Per measured run beyond its seconds: starting the tool, settling, counting (measured 1-2 s).
SCENARIO_OVERHEAD_S = 2
# Per database: seeding, ANALYZE and the audit grow with the world (~90 s at 100,000 senders, more on
# a busy machine); starting and stopping the stacks does not.
PHASE_OVERHEAD_S = 30
PHASE_OVERHEAD_S_PER_100K_SENDERS = 90


# --paired: per stack started beyond the plain run's (a warm-up per scenario and stack, the start).
STACK_START_S = 5


def estimate_seconds(args: argparse.Namespace, scenario_count: int) -> int:
    per_scenario = args.warmup + args.runs * (args.duration + SCENARIO_OVERHEAD_S)
    per_phase = PHASE_OVERHEAD_S + PHASE_OVERHEAD_S_PER_100K_SENDERS * args.senders / 100_000
    if args.paired:  # every round warms every scenario up again, on a stack started again
        per_scenario += (args.runs - 1) * args.warmup
        per_phase += 2 * args.runs * len(args.edge_list) * STACK_START_S
    return int(scenario_count * per_scenario + len(args.database_list) * per_phase)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clock_start = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        tools = {
            "wrk": toolchain.ensure_binary("wrk", "wrk"),
            "h2load": toolchain.ensure_binary("h2load", "nghttp2-client"),
            "node": toolchain.ensure_node(),
        }
        if not args.no_chart:
            toolchain.ensure_matplotlib()
    except toolchain.ToolError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2

    from devstack.ports import free_port
    from devstack.stack import DEFAULT_AUDIENCE, DEFAULT_ISSUER
    from server.auth.local_keys import generate_keys

    noop_plan, database_plans = plan(args)
    noop_count = sum(len(s) for _, s in noop_plan)
    if args.paired:  # each database's rounds run the twins of its own scenarios
        noop_count = sum(
            len(phases.noop_twins(noop_plan, edge, scenarios_))
            for plan_ in database_plans.values()
            for edge, scenarios_ in plan_
        )
    scenario_count = noop_count + sum(len(s) for p in database_plans.values() for _, s in p)
    estimate = estimate_seconds(args, scenario_count)
    log(f"{scenario_count} scenarios: about {estimate / 60:.0f} minutes")

    key_path, _ = generate_keys(WORK / "keys")
    world = seeding.World.build(args.senders, args.streams)
    log(f"{args.senders} RS256 tokens (kept in {WORK / 'tokens'} between runs)")
    minted = tokens.tokens_for(
        world.sender_ids,
        key_path=key_path,
        issuer=DEFAULT_ISSUER,
        audience=DEFAULT_AUDIENCE,
        cache_dir=WORK / "tokens",
        valid_for_s=2 * estimate + 3600,
    )
    log(f"tokens: {minted.reused} reused, {minted.signed} signed, {minted.seconds} s")
    inputs = write_inputs(world, minted.tokens, args.callers_list)

    started = dt.datetime.now(dt.UTC)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {
        "path": str(args.results_dir / f"{stamp}{'-quick' if args.quick else ''}.json"),
        "schema": 2,
        "mode": "quick" if args.quick else "full",
        "started_at": started.isoformat(timespec="seconds"),
        "settings": {
            "duration_s": args.duration,
            "runs": args.runs,
            "warmup_s": args.warmup,
            "paired": args.paired,
            "concurrency": args.concurrency_list,
            "databases": args.database_list,
            "transports": args.transport_list,
            "workloads": args.workload_list,
            "senders": args.senders,
            "history_per_sender": args.history_per_sender,
            "callers": args.callers_list,
            "callers_workloads": args.callers_workload_list,
            "streams": args.streams,
            "edge_variants": args.edge_list,
            "variant_transports": args.variant_transport_list,
            "grpc_tool": args.grpc_tool,
            "grpc_connections": args.grpc_connections,
            "rest_idempotency_keys": args.rest_keys,
            "server_env": args.server_env_map,
            "workers": args.workers,
            "server_args": list(args.server_arg_list),
            "noop_args": list(args.noop_arg_list),
            "price": seeding.SUPERLIKE_PRICE,
            "sender_coins": seeding.SENDER_COINS,
            "estimated_minutes": round(estimate / 60),
        },
        "tokens": {"reused": minted.reused, "signed": minted.signed, "seconds": minted.seconds},
        "machine": toolchain.machine_info(
            envoy=str(Path(sys.executable).parent / "envoy"),
            wrk=tools["wrk"],
            h2load=tools["h2load"],
            node=tools["node"],
        ),
        "code_fingerprint": phases.code_fingerprint(),
        # One set of ports for every phase: the rendered Envoy configs of one edge variant are identical.
        "ports": {"grpc": free_port(), "http": free_port(), "admin": free_port()},
        "edge_configs": {},
        "noop": None,
        "databases": {},
        "scenarios": [],
    }
    ctx = Context(args, tools, world, inputs, results, WORK)
    exit_code = 0
    try:
        if args.paired:
            phases.run_paired(ctx, noop_plan, database_plans)
        else:
            if noop_plan:
                phases.run_noop_phase(ctx, noop_plan)
            for db, database_plan in database_plans.items():
                phases.run_database_phase(ctx, db, database_plan)
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
    results["elapsed_minutes"] = round((time.monotonic() - clock_start) / 60, 1)
    results["problems"] = ctx.problems
    results["ok"] = exit_code == 0 and not ctx.problems
    path = phases.save(ctx)
    # latest.md/latest.png show the last run of the whole matrix; a partial run (a quick one, one
    # database, one workload) must not replace those figures, so its table and chart go beside its JSON.
    full = exit_code == 0 and scenarios.covers_default_matrix(
        databases=args.database_list,
        transports=args.transport_list,
        workloads=args.workload_list,
        concurrency=args.concurrency_list,
        quick=args.quick,
        baseline_included=not args.no_baseline,
        callers=args.callers_list,
    )
    report_stem = args.results_dir / "latest" if full else path.with_suffix("")
    markdown = reporting.write_markdown(json.loads(path.read_text()), report_stem.with_suffix(".md"), source=path)
    if not args.no_chart:
        reporting.write_chart(json.loads(path.read_text()), report_stem.with_suffix(".png"))
    print(markdown)
    log(f"finished in {(time.monotonic() - clock_start) / 60:.1f} minutes (estimated {estimate / 60:.0f})")
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
