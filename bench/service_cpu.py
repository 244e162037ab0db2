"""CPU per superlike of the send path below gRPC: SuperlikeService over the real storage (batcher,
statement, rows), in this process, without the transport, the token check or the metrics.

    .venv/bin/python bench/service_cpu.py [--database sqlite|postgres] [--sends 20000] [--profile out.prof]

`--concurrency` senders send one superlike after another each (so, as under load, requests queue
while a batch is written and the next batch carries them all); this process's CPU time over the
sends, divided by their number, is the figure. PostgreSQL's own work is in its processes, not here;
SQLite's is here (its thread). `--profile` writes a cProfile of the measured sends (the deterministic
profiler roughly doubles the time; read it for shares, not for totals). The database is recreated
and seeded as `make bench` does (postgres: --postgres-url, dropped and recreated).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import statistics
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

from bench import seeding  # noqa: E402
from server.adapters.storage import open_storage  # noqa: E402
from server.services.superlikes import SuperlikeService  # noqa: E402

WORK = BENCH_DIR / ".work" / "service-cpu"


async def sends(service: SuperlikeService, world: seeding.World, count: int, concurrency: int, tag: str) -> None:
    async def sender(lane: int) -> None:
        for index in range(lane, count, concurrency):
            sender_id = world.sender_ids[index % len(world.sender_ids)]
            stream_id = world.stream_ids[index % len(world.stream_ids)]
            await service.send(stream_id, sender_id, f"{tag}-{index}")

    await asyncio.gather(*(sender(lane) for lane in range(concurrency)))


async def main(args: argparse.Namespace) -> None:
    world = seeding.World.build(args.senders, args.streams)
    if args.database == "postgres":
        url = await seeding.reset_postgres(args.postgres_url, "postgres")
    else:
        url = seeding.reset_sqlite(WORK / "service_cpu.db")
    await seeding.seed(url, world)
    async with open_storage(url) as storage:
        service = SuperlikeService(storage.superlikes)
        await sends(service, world, 2000, args.concurrency, "warm")
        figures = []
        for number in range(args.rounds):
            profiler = cProfile.Profile() if args.profile and number == args.rounds - 1 else None
            cpu, wall = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            await sends(service, world, args.sends, args.concurrency, f"r{number}-{time.time_ns()}")
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            figures.append(1000 * cpu / args.sends)
            print(
                f"round {number + 1}: {args.sends / wall:7.0f} sends/s  {figures[-1]:.4f} ms CPU per send", flush=True
            )
        print(
            f"median {statistics.median(figures):.4f} ms CPU per send (min {min(figures):.4f}, max {max(figures):.4f})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/livechat_service_cpu")
    parser.add_argument("--sends", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--senders", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--profile", type=Path)
    arguments = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(arguments))
    except ImportError:
        asyncio.run(main(arguments))
