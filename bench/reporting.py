"""Turns a results JSON into the markdown table (latest.md) and the chart (latest.png).

Also runnable on its own: `.venv/bin/python bench/reporting.py bench/results/<file>.json`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR.parent) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR.parent))  # run as `python bench/reporting.py`

from bench import report_tables  # noqa: E402


def _settings_line(results: dict[str, Any]) -> str:
    settings = results.get("settings", {})
    callers = settings.get("callers") or [settings.get("senders")]
    tool = settings.get("grpc_tool", "h2load")
    grpc_tool = (
        f"gRPC load: bench/grpc_load.mjs, {settings.get('grpc_connections')} HTTP/2 connections, another sender every call"
        if tool == "node"
        else "gRPC load: one h2load process per call in flight"
    )
    paired = (
        f"Paired: {settings.get('runs')} rounds per database, each the no-op twins' stack (a warm-up of "
        f"{settings.get('warmup_s')} s and one run of {settings.get('duration_s')} s per scenario) and then the "
        "database's stack (the same), started in turn on the same ports; median [min–max] over the rounds. "
        if settings.get("paired")
        else f"Each scenario: {settings.get('warmup_s')} s warm-up, then {settings.get('runs')} run(s) of "
        f"{settings.get('duration_s')} s; median [min–max] over the runs. "
    )
    return (
        paired + f"{settings.get('senders'):,} senders seeded "
        f"with {settings.get('history_per_sender', '?')} history superlikes each; the load goes round "
        f"{callers[0]:,} callers"
        + (f" (and {', '.join(f'{c:,}' for c in callers[1:])} in the callers table)" if len(callers) > 1 else "")
        + f"; {settings.get('streams')} spread streams + 1 hot stream, price {settings.get('price')}; REST "
        f"Idempotency-Key: {settings.get('rest_idempotency_keys')}; gRPC calls carry no key; {grpc_tool}. "
        f"Server env overrides: {settings.get('server_env') or 'none'}; workers: {settings.get('workers', 1)}; "
        "server arguments: "
        f"{' '.join(settings.get('server_args') or []) or 'none'}"
        + (
            f" (no-op: {' '.join(settings['noop_args']) or 'none'})"
            if settings.get("noop_args") is not None and settings.get("noop_args") != settings.get("server_args")
            else ""
        )
        + ". Code fingerprint "
        f"{results.get('code_fingerprint', '?')} (server/, gen/, envoy/ at the start; per database below). "
        f"Took {results.get('elapsed_minutes', '?')} minutes."
    )


def _edge_lines(results: dict[str, Any]) -> list[str]:
    stacks = [("no-op", s) for s in (results.get("noop") or {}).get("stacks", [])]
    for db, phase in results.get("databases", {}).items():
        stacks += [(db, s) for s in phase.get("stacks", [])]
    if not stacks:
        return []
    lines = ["Envoy configs (sha256 of the file Envoy ran; one edge variant, one config in every phase):", ""]
    for edge, sha in results.get("edge_configs", {}).items():
        phases = [name for name, s in stacks if s.get("edge") == edge]
        removed = next((s.get("removed_from_edge") for _, s in stacks if s.get("edge") == edge), [])
        lines.append(
            f"- `{edge}`: {sha}, run by {', '.join(phases)}"
            + (f"; removed from the rendered config: {', '.join(removed)}" if removed else " (the rendered config)")
        )
    return [*lines, ""]


def _database_lines(results: dict[str, Any]) -> list[str]:
    lines = ["Databases:", ""]
    for db, phase in results.get("databases", {}).items():
        audit = phase.get("audit", {})
        report = audit.get("report", {})
        memory = phase.get("memory", {})
        seed = phase.get("seed", {})
        seconds = seed.get("seconds", {})
        mb = lambda v: "?" if v is None else f"{v / 1024:.0f} MB"  # noqa: E731
        seeded = (
            f"seeded {seed.get('senders', '?'):,} senders and {seed.get('history_superlikes', '?'):,} history superlikes "
            f"({sum(seed.get('rows', {}).values()):,} rows) in {seconds.get('total', '?')} s "
            f"(load {seconds.get('load', '?')} s, statistics {seconds.get('statistics', '?')} s; {seed.get('method', '?')}); "
            if seed.get("rows")
            else ""
        )
        lines.append(
            f"- **{db}** ({phase.get('version', '?')}; server code {phase.get('code_fingerprint', 'not recorded')}): "
            f"{seeded}{phase.get('superlikes_total', '?')} superlikes in the database at the end; "
            f"audit exit {audit.get('exit_code', '?')}, ok={report.get('ok')}, wallets {report.get('wallets')}, "
            f"superlikes {report.get('superlikes')}, balances {report.get('totalBalance')} = issued "
            f"{report.get('coinsIssued')}; server log ERROR lines: {phase.get('server_log_errors', '?')}; server RSS "
            f"{mb(memory.get('server_rss_start_kb'))} at the start of the phase, {mb(memory.get('server_rss_end_kb'))} "
            f"at its end, peak {mb(memory.get('server_rss_peak_kb'))}."
        )
    tokens = results.get("tokens")
    if tokens:
        lines.append(
            f"- tokens: {tokens['reused']:,} reused from the cache, {tokens['signed']:,} signed, {tokens['seconds']} s."
        )
    return lines


def markdown(results: dict[str, Any], source: Path | None = None) -> str:
    machine = results.get("machine", {})
    by_name = {s["name"]: s for s in results.get("scenarios", [])}
    lines = [
        f"# Superlike benchmark ({results.get('mode', '?')} run, {results.get('started_at', '?')})",
        "",
        f"Machine: {machine.get('nproc')} CPUs ({machine.get('cpu_model')}), {machine.get('mem_total_mb')} MB, "
        f"kernel {machine.get('kernel')}, Python {machine.get('python')}, grpcio {machine.get('grpcio')}, "
        f"{machine.get('envoy')}, {machine.get('wrk', '').split(' [')[0]}, {machine.get('h2load')}"
        + (f", Node.js {machine['node']}" if machine.get("node") else "")
        + ".",
        _settings_line(results),
        "",
        "`× no-op`: req/s over the no-op SendSuperlike server (bench/noop_server.py: a constant seed-shaped answer, "
        "no token check, no database) behind the same rendered Envoy config, driven by the same tool, script, "
        "tokens and flags, at the same concurrency: the share of the ceiling a real superlike reaches"
        + (
            " (paired: the median over the rounds of each run over its twin's run of the same round, and every "
            "no-op figure beside a database's row is its twins' in that database's rounds)"
            if results.get("settings", {}).get("paired")
            else ""
        )
        + ". `× health`: "
        "over the real server's gRPC health check on the same path (through Envoy, or direct for direct gRPC), the "
        "second reference (another method, and for REST another client and protocol). CPU columns are cores busy "
        "(CPU seconds / wall seconds) per process over the run; `ms CPU/req` is CPU milliseconds per request "
        "(the no-op's own process counts as `server`); `stolen cores` is the whole machine's CPU time taken by the "
        "hypervisor for other guests while this one had work (from /proc/stat; `–` in runs before it was recorded). "
        "The load tools share the cores with the stack. `spread` and "
        "`hot` send superlikes; `list` reads a history page (`pageSize=20`) and `top` the top supporters "
        "(`limit=10`) of the spread streams in turn, over REST through Envoy.",
        "",
        *report_tables.main_table(results, by_name),
        "",
        "## CPU per request",
        "",
        "CPU milliseconds per request of each process, and of the no-op twin (same path, config, load): the "
        "difference is what the product's own work costs each process.",
        "",
        *report_tables.cpu_table(results, by_name),
    ]
    edge = report_tables.edge_table(results, by_name)
    if edge:
        lines += [
            "",
            "## Edge variants",
            "",
            "The same scenarios behind copies of the rendered Envoy config with parts removed "
            "(bench/edge_variants.py): the change of Envoy's CPU per request is that part's share.",
            "",
            *edge,
        ]
    callers = report_tables.callers_table(results, by_name)
    if callers:
        lines += [
            "",
            "## Callers",
            "",
            "The write scenarios (and the no-op through Envoy) again with every request from the next of many more "
            "distinct callers, each with its own token: more callers than the server's and Envoy's verified-token "
            "caches hold make them verify signatures again.",
            "",
            *callers,
        ]
    lines += ["", *_edge_lines(results), *_database_lines(results)]
    problems = results.get("problems", [])
    lines += [
        "",
        "Checks: "
        + (
            "all passed (no unexpected errors; superlikes written match the successful calls; audits exit 0)."
            if not problems and results.get("ok")
            else "FAILED"
        ),
    ]
    lines += [f"- {p}" for p in problems]
    if results.get("interrupted"):
        lines.append("- the run was interrupted: partial results")
    if source is not None:
        lines += ["", f"Source: `{source.name}`"]
    return "\n".join(lines) + "\n"


def write_markdown(results: dict[str, Any], path: Path, source: Path | None = None) -> str:
    text = markdown(results, source)
    path.write_text(text)
    return text


def write_chart(results: dict[str, Any], path: Path) -> None:
    """req/s, p99 and CPU per request (server · Envoy · PostgreSQL, stacked) of the main table's
    scenarios; the edge-variant and callers figures are in the markdown tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [s for s in results.get("scenarios", []) if report_tables.is_primary(s)]
    if not scenarios:
        return
    summaries = [s["summary"] for s in scenarios]
    names = [f"{s['db']} · {report_tables.label(s)}" for s in scenarios]
    palette = {"noop": "#7f7f7f", "health": "#c7c7c7", "invalid": "#c7c7c7", "sqlite": "#1f77b4", "postgres": "#2ca02c"}
    colors = [palette.get(s["workload"] if s["db"] == "baseline" else s["db"], "#ff7f0e") for s in scenarios]
    height = max(4.0, 0.32 * len(scenarios) + 1.5)
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(20, height), sharey=True)
    positions = list(range(len(scenarios)))[::-1]
    for axis, key, low_key, high_key, title, digits in (
        (left, "rps_median", "rps_min", "rps_max", "requests/s (median, min–max)", 0),
        (middle, "p99_ms", "p99_ms_min", "p99_ms_max", "p99 latency ms (median, min–max)", 1),
    ):
        values = [s[key] or 0 for s in summaries]
        low = [max(0.0, (s[key] or 0) - (s[low_key] or 0)) for s in summaries]
        high = [max(0.0, (s[high_key] or 0) - (s[key] or 0)) for s in summaries]
        axis.barh(positions, values, xerr=[low, high], color=colors, capsize=2)
        axis.set_xlabel(title)
        for y, value, extra in zip(positions, values, high, strict=True):
            axis.text(value + extra, y, f" {value:.{digits}f}", va="center", fontsize=7)
    left.set_yticks(positions, names, fontsize=8)
    start = [0.0] * len(scenarios)
    for process, color in (("server", "#9467bd"), ("envoy", "#ff7f0e"), ("postgres", "#2ca02c")):
        values = [s["cpu_ms_per_request"].get(process) or 0 for s in summaries]
        right.barh(positions, values, left=start, color=color, label=process)
        start = [a + b for a, b in zip(start, values, strict=True)]
    for y, value in zip(positions, start, strict=True):
        right.text(value, y, f" {value:.2f}", va="center", fontsize=7)
    right.set_xlabel("CPU ms per request (median)")
    right.set_xlim(0, 1.15 * max([*start, 0.1]))
    right.legend(fontsize=8, loc="upper right")
    save_chart(
        figure,
        results,
        "Superlikes (spread/hot: send; list/top: read)",
        path,
        legend="; dark grey: no-op server, light grey: health check, blue: SQLite, green: PostgreSQL",
    )


def save_chart(figure: Any, results: dict[str, Any], title: str, path: Path, legend: str = "") -> None:
    """Heads a chart with the run's mode, start and machine, writes it to `path` and frees it."""
    import matplotlib.pyplot as plt

    machine = results.get("machine", {})
    figure.suptitle(
        f"{title}: {results.get('mode')} run {results.get('started_at')} — {machine.get('nproc')} CPUs "
        f"{machine.get('cpu_model')}{legend}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def redraw(
    argv: list[str],
    script: str,
    stem: str,
    write_markdown: Callable[[dict[str, Any], Path, Path | None], str],
    write_chart: Callable[[dict[str, Any], Path], None],
) -> int:
    """A report script's command line: `script RESULTS.json` rewrites `<stem>.md` and `<stem>.png`
    beside the results file."""
    if len(argv) != 1:
        print(f"usage: {script} RESULTS.json", file=sys.stderr)
        return 2
    source = Path(argv[0])
    results = json.loads(source.read_text())
    print(write_markdown(results, source.parent / f"{stem}.md", source))
    write_chart(results, source.parent / f"{stem}.png")
    return 0


def main(argv: list[str]) -> int:
    return redraw(argv, "reporting.py", "latest", write_markdown, write_chart)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
