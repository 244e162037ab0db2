"""Server CPU per superlike, code A against code B, measured at the same time on the same machine.

    .venv/bin/python bench/server_cpu.py --tree base=/path/to/base-worktree --tree new=. --rounds 8
    .venv/bin/python bench/server_cpu.py --tree new=. --rounds 1 --profile bench/.work/server.raw

On a shared machine the CPU time one request costs moves with what the neighbours do (they share
caches and cores): runs taken one after the other differed by more than the changes being measured.
So the two trees run side by side: each `livechat serve` (started from its tree, so that tree's
`server/` and `gen/` are imported) behind an Envoy of its own, each driven by its own wrk (REST, the
bench's superlike.lua, --concurrency connections) during the same seconds, on one seeded database
with half of the senders and half of the streams each, so neither waits on the other's rows. Every
round prints both servers' CPU milliseconds per request (utime+stime from /proc/<pid>/stat over the
round divided by the requests wrk completed) and their ratio; the trees swap sides every round (each
round restarts both servers). The median ratio over the rounds is the result and the spread of the
ratios its noise (run one tree twice, A against A, to see the noise alone).

With one tree it measures that tree alone; `--profile` records its server with py-spy meanwhile
(`-f raw`, summarise with bench/profile_summary.py). Ports: --ports, three per tree (gRPC, HTTP,
Envoy admin).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))

from bench import loadgen, procstat, seeding, toolchain  # noqa: E402

WORK = BENCH_DIR / ".work" / "server-cpu"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=DIR", help="one or two source trees")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/livechat_server_cpu")
    parser.add_argument("--ports", default="26001", help="the first of 3 consecutive ports per tree")
    parser.add_argument("--workload", choices=["spread", "hot"], default="spread")
    parser.add_argument("--concurrency", type=int, default=64, help="wrk connections per tree")
    parser.add_argument("--duration", type=int, default=10, help="seconds per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--senders", type=int, default=2000, help="seeded senders, split between the trees")
    parser.add_argument("--streams", type=int, default=200, help="spread streams, split between the trees")
    parser.add_argument(
        "--edge-over-tcp",
        action="store_true",
        help="Envoy reaches the servers over TCP instead of their Unix sockets (for trees without edge sockets)",
    )
    parser.add_argument(
        "--pin-servers",
        type=int,
        metavar="CPU",
        help="run every server on this one CPU, so both time-share the same core and caches (Envoy and wrk stay free)",
    )
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the last tree's server, last round")
    parser.add_argument("--profile-rate", type=int, default=100)
    parser.add_argument(
        "--profile-native",
        action="store_true",
        help="py-spy --native (C frames too; it pauses the server for every sample, so keep the rate low)",
    )
    args = parser.parse_args()
    if not 1 <= len(args.tree) <= 2:
        parser.error("one or two --tree")
    return args


@dataclass
class Side:
    name: str
    tree: Path
    stack: Any
    tokens_file: Path
    streams_file: Path
    server: subprocess.Popen[bytes] | None = None


def start(side: Side, pin: int | None) -> None:
    stack = side.stack
    with stack.server_log.open("ab") as log:
        side.server = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve"],
            cwd=side.tree,
            env=dict(stack.config.server_env(), PYTHONPATH=str(side.tree)),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if pin is None else lambda: os.sched_setaffinity(0, {pin}),
        )
    stack.server = side.server
    config = stack.config
    for target in [f"127.0.0.1:{config.grpc_port}", *(f"unix:{path}" for path in config.worker_sockets())]:
        stack._wait_for_health(target, side.server, stack.server_log, 30)
    stack.start_envoy()


def drive(args: argparse.Namespace, wrk: str, side: Side, seconds: int, into: dict[str, Any]) -> None:
    into[side.name] = loadgen.run_wrk(
        wrk,
        url=side.stack.http_url,
        script=BENCH_DIR / "superlike.lua",
        script_args=[str(side.tokens_file), str(side.streams_file), args.workload, f"c{time.time_ns()}{side.name}"],
        connections=args.concurrency,
        duration_s=seconds,
    )


def drive_all(args: argparse.Namespace, wrk: str, sides: list[Side], seconds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    threads = [threading.Thread(target=drive, args=(args, wrk, side, seconds, results)) for side in sides]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def profiler(args: argparse.Namespace, pid: int) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    mode = ["--native"] if args.profile_native else ["--nonblocking"]
    command = [py_spy, "record", *mode, "-r", str(args.profile_rate), "-f", "raw", "-o", str(args.profile)]
    return subprocess.Popen([*command, "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the threads of `pid` by name: the main thread (the event loop), grpc's
    event_engine threads, the other Python threads (grpc's poller, the metrics server)."""
    seconds: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = "event loop" if int(tid) == pid else Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        seconds[name] = seconds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / procstat.CLOCK_TICKS
    return seconds


def measure(args: argparse.Namespace, wrk: str, sides: list[Side], profile: bool) -> dict[str, dict[str, float]]:
    profiled = next(side for side in sides if side.name == args.tree[-1].partition("=")[0])
    spy = profiler(args, profiled.server.pid) if profile else None  # type: ignore[union-attr]
    if spy is not None:
        time.sleep(1.0)
    pids = {side.name: (side.server.pid, side.stack.envoy.pid) for side in sides}  # type: ignore[union-attr]
    before = {name: (procstat.cpu_seconds(s), procstat.cpu_seconds(e)) for name, (s, e) in pids.items()}
    threads_before = {name: thread_cpu(s) for name, (s, _) in pids.items()}
    results = drive_all(args, wrk, sides, args.duration)
    after = {name: (procstat.cpu_seconds(s), procstat.cpu_seconds(e)) for name, (s, e) in pids.items()}
    threads_after = {name: thread_cpu(s) for name, (s, _) in pids.items()}
    if spy is not None:
        spy.send_signal(2)
        spy.wait(30)
    figures = {}
    for name, result in results.items():
        requests = max(1, result["requests"])
        figures[name] = {
            "rps": result["rps"],
            "server_ms": 1000 * (after[name][0] - before[name][0]) / requests,  # type: ignore[operator]
            "envoy_ms": 1000 * (after[name][1] - before[name][1]) / requests,  # type: ignore[operator]
            "p50_ms": result["latency_ms"]["p50"],
            "errors": result["non_2xx"] + result["socket_errors"],
            "threads_ms": {
                thread: 1000 * (spent - threads_before[name].get(thread, 0.0)) / requests
                for thread, spent in threads_after[name].items()
                if spent - threads_before[name].get(thread, 0.0) > 0
            },
        }
    return figures


def prepare(args: argparse.Namespace, trees: list[tuple[str, Path]]) -> list[Side]:
    from cryptography.hazmat.primitives import serialization

    from devstack.stack import DEFAULT_AUDIENCE, DEFAULT_ISSUER, Stack, StackConfig
    from server.auth.local_keys import generate_keys

    WORK.mkdir(parents=True, exist_ok=True)
    key_path, jwks_path = generate_keys(WORK / "keys")
    world = seeding.World.build(args.senders, args.streams)
    private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    tokens = seeding.mint_tokens(
        private_key, world, issuer=DEFAULT_ISSUER, audience=DEFAULT_AUDIENCE, ttl_seconds=86400
    )
    if args.database == "postgres":
        database_url = asyncio.run(seeding.reset_postgres(args.postgres_url, "postgres"))
    else:
        database_url = seeding.reset_sqlite(WORK / "server_cpu.db")
    asyncio.run(seeding.seed(database_url, world))
    first_port = int(args.ports)
    sides = []
    for index, (name, tree) in enumerate(trees):
        share = slice(index, None, len(trees))
        tokens_file, streams_file = WORK / f"tokens-{index}.txt", WORK / f"streams-{index}.txt"
        tokens_file.write_text("\n".join(tokens[share]) + "\n")
        # Each side its own streams (the hot workload: the hot stream for one side, a spread stream
        # for the other), so neither side's batches wait on the other's stream rows.
        hot = [world.hot_stream_id, *world.stream_ids][index]
        streams_file.write_text("\n".join([hot] if args.workload == "hot" else world.stream_ids[share]) + "\n")
        base = first_port + 10 * index
        config = StackConfig(
            workdir=WORK / f"stack-{index}",
            database_url=database_url,
            jwks_path=jwks_path,
            grpc_port=base,
            http_port=base + 1,
            admin_port=base + 2,
            edge_over_unix_socket=not args.edge_over_tcp,
        )
        sides.append(Side(name, tree, Stack(config), tokens_file, streams_file))
    return sides


def report(figures: dict[str, list[dict[str, float]]]) -> None:
    names = list(figures)
    for name in names:
        server = [run["server_ms"] for run in figures[name]]
        print(
            f"{name:>8}: server ms/req median {statistics.median(server):.3f} (min {min(server):.3f}, max {max(server):.3f})"
        )
    if len(names) == 2:
        ratios = [b["server_ms"] / a["server_ms"] for a, b in zip(figures[names[0]], figures[names[1]], strict=True)]
        print(
            f"{names[1]}/{names[0]} server CPU per request: median {statistics.median(ratios):.3f} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} rounds)"
        )


def main() -> int:
    args = parse_args()
    trees = [(name, Path(path).resolve()) for name, _, path in (t.partition("=") for t in args.tree)]
    wrk = toolchain.ensure_binary("wrk", "wrk")
    sides = prepare(args, trees)
    figures: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    try:
        for number in range(1, args.rounds + 1):
            # The trees swap sides every round: a side's ports, data half or start order must not
            # favour one tree (run A against A to see that this cancels out).
            for side, (name, tree) in zip(sides, trees[number % 2 :] + trees[: number % 2], strict=True):
                side.name, side.tree = name, tree
                start(side, args.pin_servers)
            drive_all(args, wrk, sides, args.warmup)
            round_figures = measure(args, wrk, sides, profile=args.profile is not None and number == args.rounds)
            for side in sides:
                side.stack.stop()
            line = []
            for name, figure in sorted(round_figures.items(), key=lambda item: list(figures).index(item[0])):
                figures[name].append(figure)
                line.append(
                    f"{name} {figure['rps']:5.0f} req/s server {figure['server_ms']:.3f} envoy {figure['envoy_ms']:.3f}"
                    f" ms/req p50 {figure['p50_ms']:.0f} ms errors {figure['errors']}"
                )
            print(f"round {number}: " + " | ".join(line), flush=True)
            for name, figure in round_figures.items():
                threads = ", ".join(f"{thread} {ms:.3f}" for thread, ms in sorted(figure["threads_ms"].items()))
                print(f"  {name} server threads, ms/req: {threads}", flush=True)
    finally:
        loadgen.stop_all()
        for side in sides:
            side.stack.stop()
    report(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
