"""`make bench-feed`: the live feed under load, through the real stack (bench/README.md, "Live feed").

1. `hot`: N SSE subscribers (1,000) on one stream through Envoy while superlikes are sent over REST
   through Envoy at R/s (50) for D s (60): every subscriber must receive every superlike exactly
   once, in the stream's order; delivery latency, the send path's latency, CPU and RSS. SQLite and
   PostgreSQL.
2. `curve`: subscribers x send rate in short runs, each row stopped at the first point that misses
   the delivery target (p99 <= 500 ms) or loses anything.
3. `replicas` (PostgreSQL): two server processes; subscribers through an Envoy in front of replica B
   while every send goes through an Envoy in front of replica A (every delivery crosses replicas);
   then subscribers through one Envoy in front of both, and replica B is SIGKILLed mid-run.

Results: bench/results/feed-<timestamp>.json, bench/results/feed-latest.md and feed-latest.png.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

from bench import feed_reporting, seeding, toolchain  # noqa: E402
from bench.feed_point import Point, Target, run_point, summary_line  # noqa: E402

WORK = BENCH_DIR / ".work" / "feed"
RESULTS = BENCH_DIR / "results"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/livechat_feedbench"
DELIVERY_TARGET_MS = 500.0
SEND_TARGET_MS = 50.0


def log(message: str) -> None:
    print(f"[bench-feed {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny runs (10 subscribers, 5 s) to check the code")
    parser.add_argument("--parts", default="hot,curve,replicas", help="hot,curve,replicas")
    parser.add_argument("--databases", default="sqlite,postgres", help="for `hot` (curve: --curve-databases)")
    parser.add_argument("--curve-databases", default="postgres")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="superlikes per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sending (hot)")
    parser.add_argument("--curve-subscribers", default="100,500,1000,2000")
    parser.add_argument("--curve-rates", default="10,50,100,200")
    parser.add_argument("--curve-duration", type=float, default=15.0)
    parser.add_argument("--replica-duration", type=float, default=30.0)
    parser.add_argument("--kill-at", type=float, default=10.0, help="seconds into the replica run")
    parser.add_argument("--per-process", type=int, default=1000, help="subscribers per client process")
    parser.add_argument("--senders", type=int, default=3000, help="seeded senders (distinct tokens)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_FEED_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="dropped and recreated (env BENCH_FEED_POSTGRES_URL)",
    )
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument(
        "--results-dir", type=Path, default=None, help="default bench/results (a smoke run: bench/.work/feed/results)"
    )
    args = parser.parse_args(argv)
    if args.results_dir is None:
        args.results_dir = WORK / "results" if args.smoke else RESULTS
    if args.smoke:
        args.subscribers, args.duration, args.senders = 10, 5.0, 200
        args.curve_subscribers, args.curve_rates, args.curve_duration = "10,20", "5,10", 5.0
        args.replica_duration, args.kill_at = 6.0, 2.5
    args.part_list = [p for p in args.parts.split(",") if p]
    return args


class Phase:
    """One database with its seeded world and tokens, and the stack processes started on it."""

    def __init__(self, args: argparse.Namespace, db: str, tokens: list[str], world: seeding.World, jwks: Path) -> None:
        self.args, self.db, self.tokens, self.world, self.jwks = args, db, tokens, world, jwks
        self.stacks: list[Any] = []
        CURRENT[:] = [self]
        if db == "sqlite":
            self.url = seeding.reset_sqlite(WORK / "livechat_feedbench.db")
        else:
            self.url = asyncio.run(seeding.reset_postgres(args.postgres_url, "postgres"))
        log(f"{db}: seeding {len(world.sender_ids)} senders")
        asyncio.run(seeding.seed(self.url, world))

    def stack(self, name: str, grpc_port: int, replicas: tuple[int, ...] = (), **edge: Any) -> Any:
        """`edge`: how its Envoy reaches the server (StackConfig's edge_over_unix_socket, socket_dir);
        by default on the Unix socket of the server this stack starts."""
        from devstack.ports import free_port
        from devstack.stack import Stack, StackConfig

        config = StackConfig(
            workdir=WORK / f"stack-{self.db}-{name}",
            database_url=self.url,
            jwks_path=self.jwks,
            grpc_port=grpc_port,
            http_port=free_port(),
            admin_port=free_port(),
            replica_grpc_ports=replicas,
            **edge,
        )
        for old in config.workdir.glob("*.log"):
            old.unlink()
        stack = Stack(config)
        self.stacks.append(stack)
        return stack

    def target(self, subscribe_ports: list[int], send_port: int, measured: dict[str, int]) -> Target:
        return Target(
            self.url,
            self.world.hot_stream_id,
            subscribe_ports,
            send_port,
            measured,
            self.tokens,
            WORK / f"points-{self.db}",
        )

    def stop(self) -> None:
        for stack in reversed(self.stacks):
            stack.stop()
        self.stacks.clear()


def part_hot_and_curve(phase: Phase, results: dict[str, Any], do_hot: bool, do_curve: bool) -> None:
    from devstack.ports import free_port

    args = phase.args
    stack = phase.stack("single", free_port())
    stack.start()
    target = phase.target(
        [stack.config.http_port], stack.config.http_port, {"server": stack.server.pid, "envoy": stack.envoy.pid}
    )
    offset = 0
    if do_hot:
        point = Point(f"{phase.db}/hot", args.subscribers, args.rate, args.duration, args.per_process)
        result = run_point(target, point, log)
        log(summary_line(result))
        results["hot"].append({"db": phase.db, **result})
        offset += int(args.rate * args.duration)
    if do_curve:
        subscriber_counts = [int(n) for n in args.curve_subscribers.split(",")]
        rates = [float(r) for r in args.curve_rates.split(",")]
        for subscribers in subscriber_counts:
            for rate in rates:
                point = Point(
                    f"{phase.db}/curve/{subscribers}x{rate:g}",
                    subscribers,
                    rate,
                    args.curve_duration,
                    args.per_process,
                    token_offset=offset,
                )
                offset += int(rate * args.curve_duration)
                result = run_point(target, point, log)
                log(summary_line(result))
                result["meets_target"] = meets_target(result)
                results["curve"].append({"db": phase.db, **result})
                save(results)
                if not result["meets_target"]:
                    break  # a higher rate with as many subscribers only costs more
    phase.stop()


def part_replicas(phase: Phase, results: dict[str, Any]) -> None:
    from devstack.ports import free_port

    args = phase.args
    port_a, port_b = free_port(), free_port()
    main = phase.stack("a", port_a)  # server A + Envoy A (to A only): where every superlike is sent
    main.start()
    main.start_replica(port_b)
    # Envoy B in front of replica B only: a replica listens on TCP only.
    edge_b = phase.stack("b", port_b, edge_over_unix_socket=False)
    edge_b.start_envoy()
    # One Envoy over both, as in production: A on its Unix socket, B on TCP.
    edge_both = phase.stack("both", port_a, (port_b,), socket_dir=main.config.edge_socket_dir)
    edge_both.start_envoy()
    replica_b = main.replicas[port_b]
    measured = {
        "server": main.server.pid,
        "envoy": edge_b.envoy.pid,
        "replica_b": replica_b.pid,
        "envoy_a": main.envoy.pid,
    }
    cross = Point(
        "postgres/replicas/cross",
        args.subscribers,
        args.rate,
        args.replica_duration,
        args.per_process,
        extra={"setup": "subscribers via Envoy B -> replica B; sends via Envoy A -> server A"},
    )
    result = run_point(phase.target([edge_b.config.http_port], main.config.http_port, measured), cross, log)
    log(summary_line(result))
    results["replicas"].append(result)
    save(results)

    measured = {
        "server": main.server.pid,
        "envoy": edge_both.envoy.pid,
        "replica_b": replica_b.pid,
        "envoy_a": main.envoy.pid,
    }
    kill = Point(
        "postgres/replicas/sigkill",
        args.subscribers,
        args.rate,
        args.replica_duration,
        args.per_process,
        action=(args.kill_at, lambda: main.kill_replica(port_b)),
        token_offset=int(args.rate * args.replica_duration),
        extra={
            "setup": f"subscribers via one Envoy over A and B (least busy first); sends via Envoy A -> "
            f"server A; replica B SIGKILLed {args.kill_at:g} s after the first send"
        },
    )
    result = run_point(phase.target([edge_both.config.http_port], main.config.http_port, measured), kill, log)
    log(summary_line(result))
    results["replicas"].append(result)
    phase.stop()


def meets_target(result: dict[str, Any]) -> bool:
    # From the server's timestamp: an upper bound that stays one when answers are late (a congested
    # send path delays the answer, not the commit, so latency from the answer would read too low).
    p99 = result["delivery_ms_from_server_timestamp"]["p99"]
    return bool(
        result["subscribers_failing"] == 0 and result["drained_all"] and p99 is not None and p99 <= DELIVERY_TARGET_MS
    )


def save(results: dict[str, Any]) -> Path:
    path = Path(results["path"])
    path.write_text(json.dumps({k: v for k, v in results.items() if k != "path"}, indent=1) + "\n")
    return path


CURRENT: list[Phase] = []  # the phase whose processes a SIGTERM must stop


def _interrupt(*_: object) -> None:
    # Stop everything here first: the exception below may land where it is swallowed (a GC callback).
    from bench.feed_point import LIVE_CHILDREN

    for child in list(LIVE_CHILDREN):
        child.stop()
    for phase in CURRENT:
        phase.stop()
    raise KeyboardInterrupt()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    if not args.no_chart:
        toolchain.ensure_matplotlib()
    from cryptography.hazmat.primitives import serialization

    from devstack.stack import DEFAULT_AUDIENCE, DEFAULT_ISSUER
    from server.auth.local_keys import generate_keys

    WORK.mkdir(parents=True, exist_ok=True)
    key_path, jwks = generate_keys(WORK / "keys")
    world = seeding.World.build(args.senders, 20)
    private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    tokens = seeding.mint_tokens(
        private_key, world, issuer=DEFAULT_ISSUER, audience=DEFAULT_AUDIENCE, ttl_seconds=6 * 3600
    )
    started = dt.datetime.now(dt.UTC)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    machine = toolchain.machine_info(envoy=str(Path(sys.executable).parent / "envoy"), wrk="true", h2load="true")
    for tool in ("wrk", "h2load"):
        machine.pop(tool, None)
    results: dict[str, Any] = {
        "path": str(args.results_dir / f"feed-{stamp}{'-smoke' if args.smoke else ''}.json"),
        "schema": 1,
        "mode": "smoke" if args.smoke else "full",
        "started_at": started.isoformat(timespec="seconds"),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "settings": {k: v for k, v in vars(args).items() if k not in ("results_dir",)},
        "targets": {"delivery_p99_ms": DELIVERY_TARGET_MS, "send_p99_ms": SEND_TARGET_MS},
        "machine": machine,
        "hot": [],
        "curve": [],
        "replicas": [],
    }
    results["settings"]["results_dir"] = str(args.results_dir)
    phase: Phase | None = None
    exit_code = 0
    try:
        databases = [d for d in args.databases.split(",") if d]
        curve_dbs = [d for d in args.curve_databases.split(",") if d]
        for db in dict.fromkeys(databases + curve_dbs):
            do_hot = "hot" in args.part_list and db in databases
            do_curve = "curve" in args.part_list and db in curve_dbs
            if not (do_hot or do_curve):
                continue
            phase = Phase(args, db, tokens, world, jwks)
            part_hot_and_curve(phase, results, do_hot, do_curve)
            phase = None
            save(results)
        if "replicas" in args.part_list:
            phase = Phase(args, "postgres", tokens, world, jwks)
            part_replicas(phase, results)
            phase = None
    except KeyboardInterrupt:
        log("interrupted: stopping everything this run started")
        results["interrupted"] = True
        exit_code = 130
    finally:
        if phase is not None:
            phase.stop()
    results["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    path = save(results)
    document = json.loads(path.read_text())
    markdown = feed_reporting.write_markdown(document, args.results_dir / "feed-latest.md", source=path)
    if not args.no_chart:
        feed_reporting.write_chart(document, args.results_dir / "feed-latest.png")
    print(markdown)
    log(f"results: {path}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
