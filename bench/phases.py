"""The phases of a benchmark run, each on stacks of its own, all on the same ports and settings so
every phase behind the same edge variant runs a byte-identical Envoy config:

* the no-op phase: bench/noop_server.py behind Envoy, once per edge variant (no database);
* a database phase: the database recreated and seeded once, then for each edge variant `livechat
  serve` + Envoy started, its scenarios run and the stack stopped; at the end the money audit.

With --paired the two alternate instead (run_paired): each database is seeded once, then every
measured run of its scenarios follows one run of their no-op twins, the two stacks started in turn
on the same ports. The no-op is then measured minutes, not half an hour, from what it is divided by,
and each run is divided by its own twin: this machine's speed drifts by more than the differences
the ratio is read for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import procstat, seeding
from bench.bench_stack import BenchStack
from bench.measure import Context, log, run_scenario
from bench.run_summary import summarize_runs
from bench.scenarios import Scenario

ROOT = Path(__file__).resolve().parent.parent
AUDIT_TIMEOUT_S = 600


def edge_rate_limit(transports: list[str], grpc_tool: str) -> dict[str, Any]:
    """The edge's per-caller limit for this run: the product's own (a person's pace) unless h2load
    drives gRPC through Envoy. wrk and grpc_load.mjs spread the load round-robin over every caller
    (2,000 or more: at 2,000 req/s each sends 1 a second, under the 5/s limit), but h2load pins one
    sender to each of its connections, dozens of calls a second each: those runs raise the limit out
    of the way and say so."""
    if grpc_tool == "h2load" and "grpc-envoy" in transports:
        return {"send_burst": 100_000, "send_per_second": 100_000}
    return {}


def stack_config(ctx: Context, name: str, database_url: str) -> Any:
    from devstack.stack import StackConfig

    args, ports = ctx.args, ctx.results["ports"]
    return StackConfig(
        workdir=ctx.work / f"stack-{name}",
        database_url=database_url,
        jwks_path=ctx.work / "keys" / "jwks.json",
        grpc_port=ports["grpc"],
        http_port=ports["http"],
        admin_port=ports["admin"],
        extra_server_env=dict(args.server_env_map),
        envoy_overrides=edge_rate_limit(args.transport_list, args.grpc_tool),
        workers=args.workers,
        # One directory for every phase: Envoy's upstream (the workers' sockets) is part of the config
        # that must be byte-identical between the no-op and the superlikes.
        socket_dir=ctx.work / "sockets",
    )


def run_on_stack(
    ctx: Context,
    stack: BenchStack,
    scenarios: list[Scenario],
    counter: seeding.SuperlikeCounter | None,
    *,
    pair: str | None = None,
) -> dict[str, Any]:
    """Starts the stack, runs the scenarios on it, stops it; returns what the stack itself showed.
    `pair`: a paired round (run_paired): one measured run per scenario, tagged with it."""
    config = stack.config
    for log_file in ("server.log", "envoy.log"):
        (config.workdir / log_file).unlink(missing_ok=True)
    record: dict[str, Any] = {"edge": stack.edge, "server": "noop" if stack.noop else "livechat serve"}
    record["code_fingerprint"] = code_fingerprint()  # the server loads its code when it starts
    log(f"starting {record['server']} + Envoy ({stack.edge} config; logs in {config.workdir})")
    ctx.stack = stack
    stack.start()
    record["envoy_config_sha256"] = stack.envoy_config_sha256
    record["removed_from_edge"] = stack.removed_from_edge
    _check_same_config(ctx, stack.edge, record["envoy_config_sha256"])
    ctx.sampler = procstat.RssSampler(stack.server.pid, stack.envoy.pid)
    ctx.sampler.start()
    start = ctx.sampler.now()
    try:
        for scenario in scenarios:
            _record(ctx, run_scenario(ctx, scenario, counter, runs=1 if pair else None, pair=pair))
            save(ctx)
    finally:
        ctx.sampler.stop()
        record["memory"] = ctx.sampler.window(start, ctx.sampler.now())
        record["rss_timeline"] = [list(s) for s in ctx.sampler.samples]
        ctx.sampler = None
        stack.stop()
        ctx.stack = None
        server_log = (config.workdir / "server.log").read_text(errors="replace").splitlines()
        record["server_log_errors"] = sum(1 for line in server_log if " ERROR " in line)
        record["server_log_error_samples"] = [line for line in server_log if " ERROR " in line][:5]
    return record


def _record(ctx: Context, scenario: dict[str, Any]) -> None:
    """A scenario's record; a paired round's run joins the runs of the same scenario's earlier rounds."""
    for earlier in ctx.results["scenarios"]:
        if earlier["name"] == scenario["name"]:
            earlier["runs"].extend(scenario["runs"])
            earlier["summary"] = summarize_runs(earlier["runs"])
            return
    ctx.results["scenarios"].append(scenario)


def _check_same_config(ctx: Context, edge: str, sha256: str) -> None:
    """The no-op and the superlikes behind one edge variant must have run the same Envoy config."""
    seen = ctx.results["edge_configs"].setdefault(edge, sha256)
    if seen != sha256:
        ctx.problems.append(f"edge {edge}: Envoy ran config {sha256} here and {seen} in an earlier phase")


def run_noop_phase(ctx: Context, plan: list[tuple[str, list[Scenario]]]) -> None:
    """The no-op server behind each edge variant in turn."""
    phase: dict[str, Any] = {"stacks": []}
    ctx.results["noop"] = phase
    for edge, scenarios in plan:
        phase["stacks"].append(run_on_stack(ctx, _noop_stack(ctx, edge), scenarios, None))


def _noop_stack(ctx: Context, edge: str) -> BenchStack:
    # The no-op reads no database, but the settings loader it shares with the server wants a URL (one
    # several processes may share, when it runs several workers).
    unused_database = ctx.args.postgres_url if ctx.args.workers > 1 else f"sqlite:///{ctx.work / 'noop-unused.db'}"
    config = stack_config(ctx, f"noop-{edge}", unused_database)
    return BenchStack(config, noop=True, edge=edge, server_args=ctx.args.noop_arg_list)


def _database_stack(ctx: Context, db: str, edge: str, database_url: str) -> BenchStack:
    config = stack_config(ctx, f"{db}-{edge}", database_url)
    return BenchStack(config, edge=edge, server_args=ctx.args.server_arg_list)


def run_database_phase(ctx: Context, db: str, plan: list[tuple[str, list[Scenario]]]) -> None:
    database_url, counter, phase = _prepare_database(ctx, db)
    for edge, scenarios in plan:
        phase["stacks"].append(run_on_stack(ctx, _database_stack(ctx, db, edge, database_url), scenarios, counter))
    _finish_database(ctx, db, database_url, counter, phase)


def run_paired(
    ctx: Context,
    noop_plan: list[tuple[str, list[Scenario]]],
    database_plans: dict[str, list[tuple[str, list[Scenario]]]],
) -> None:
    """--paired: per database and round, the no-op twins of its scenarios (one run each), then its
    scenarios (one run each), stacks alternating on the same ports; --runs rounds. Every run carries
    its round (`pair`), so the report divides each run by the twin's run of the same round."""
    ctx.results["noop"] = {"stacks": []}
    for db, plan in database_plans.items():
        database_url, counter, phase = _prepare_database(ctx, db)
        for round_number in range(1, ctx.args.runs + 1):
            pair = f"{db}#{round_number}"
            for edge, scenarios in plan:
                noop = noop_twins(noop_plan, edge, scenarios)
                if noop:
                    log(f"{pair}: the no-op twins behind the {edge} config")
                    ctx.results["noop"]["stacks"].append(
                        run_on_stack(ctx, _noop_stack(ctx, edge), noop, None, pair=pair)
                    )
                log(f"{pair}: {db} behind the {edge} config")
                stack = _database_stack(ctx, db, edge, database_url)
                phase["stacks"].append(run_on_stack(ctx, stack, scenarios, counter, pair=pair))
        _finish_database(ctx, db, database_url, counter, phase)


def noop_twins(noop_plan: list[tuple[str, list[Scenario]]], edge: str, scenarios: list[Scenario]) -> list[Scenario]:
    """The no-op scenarios, behind `edge`, that `scenarios` are divided by (their `noop`)."""
    twins = {scenario.noop for scenario in scenarios}
    return [noop for noop in dict(noop_plan).get(edge, []) if noop.name in twins]


def _prepare_database(ctx: Context, db: str) -> tuple[str, seeding.SuperlikeCounter, dict[str, Any]]:
    """The database recreated and seeded; returns its URL, its superlike counter and its phase record."""
    args = ctx.args
    if db == "sqlite":
        database_url = seeding.reset_sqlite(ctx.work / "livechat_bench.db")
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
    world = ctx.world
    log(
        f"{db}: seeding {len(world.sender_ids)} senders, {len(world.stream_ids) + 1} streams, "
        f"{len(world.sender_ids) * args.history_per_sender} history superlikes"
    )
    seed_info = asyncio.run(seeding.seed(database_url, world, history_per_sender=args.history_per_sender))
    log(f"{db}: seeded in {seed_info['seconds']['total']} s ({seed_info['method']})")
    counter = seeding.SuperlikeCounter(database_url)
    phase: dict[str, Any] = {"url": shown_url, "version": counter.server_version(), "seed": seed_info, "stacks": []}
    if db == "postgres":
        ctx.postgres_scope = asyncio.run(postgres_scope(database_url))
        phase["postgres_processes"] = (
            "not on this machine: no PostgreSQL CPU"
            if ctx.postgres_scope is None
            else f"postmaster {ctx.postgres_scope.postmaster} and its children, but other databases' backends"
        )
    ctx.results["databases"][db] = phase
    save(ctx)
    return database_url, counter, phase


def _finish_database(
    ctx: Context, db: str, database_url: str, counter: seeding.SuperlikeCounter, phase: dict[str, Any]
) -> None:
    """After the database's last stack: its lines of the report, and the money audit."""
    first = phase["stacks"][0]
    # The report's per-database lines: the full config's stack.
    phase["memory"], phase["code_fingerprint"] = first["memory"], first["code_fingerprint"]
    phase["server_log_errors"] = sum(s["server_log_errors"] for s in phase["stacks"])
    total = counter.count()
    phase["superlikes_total"] = total
    log(f"{db}: {total} superlikes in the database; running the audit")
    phase["audit"] = audit(database_url)
    report = phase["audit"]["report"]
    if phase["audit"]["exit_code"] != 0 or not report.get("ok"):
        ctx.problems.append(f"{db}: the money audit failed: {json.dumps(report)[:1000]} {phase['audit']['stderr']}")
    elif report.get("superlikes") != total:
        ctx.problems.append(f"{db}: the audit saw {report.get('superlikes')} superlikes, the count {total}")
    log(f"{db}: audit exit {phase['audit']['exit_code']}: {json.dumps(report)[:300]}")


async def postgres_scope(database_url: str) -> procstat.PostgresScope | None:
    """The local postmaster that serves the benchmark's database (the parent of a backend of ours)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    connection = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        # Read while the connection (and so the backend process) is still there.
        postmaster = procstat.parent_of(backend)
    finally:
        await connection.close()
    # None: the server runs elsewhere, and its CPU is not this machine's to measure.
    return None if postmaster is None else procstat.PostgresScope(postmaster, str(url.database))


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


def code_fingerprint() -> str:
    """sha256 over the server, generated code and Envoy config that were measured (the tree may change)."""
    digest = hashlib.sha256()
    for directory, pattern in ((ROOT / "server", "*.py"), (ROOT / "gen", "*"), (ROOT / "envoy", "*")):
        for path in sorted(directory.rglob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def save(ctx: Context) -> Path:
    path = Path(ctx.results["path"])
    path.write_text(json.dumps({k: v for k, v in ctx.results.items() if k != "path"}, indent=1) + "\n")
    return path
