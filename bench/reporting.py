"""Turns a results JSON into the markdown table (latest.md) and the chart (latest.png).

Also runnable on its own: `.venv/bin/python bench/reporting.py bench/results/<file>.json`.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROCESSES = ("server", "envoy", "postgres", "load_tool")


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rps = [r["rps"] for r in runs]
    return {
        "runs": len(runs),
        "rps_median": _median(rps),
        "rps_min": min(rps) if rps else None,
        "rps_max": max(rps) if rps else None,
        "p50_ms": _median([r["latency_ms"]["p50"] for r in runs]),
        "p90_ms": _median([r["latency_ms"]["p90"] for r in runs]),
        "p99_ms": _median([r["latency_ms"]["p99"] for r in runs]),
        "p99_ms_min": min((r["latency_ms"]["p99"] for r in runs if r["latency_ms"]["p99"] is not None), default=None),
        "p99_ms_max": max((r["latency_ms"]["p99"] for r in runs if r["latency_ms"]["p99"] is not None), default=None),
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(r["socket_errors"] + (r["non_2xx"] if r.get("expected_status", 200) == 200 else 0) for r in runs),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "superlikes_written": sum(r["superlikes_written"] for r in runs),
        "cpu_cores": {p: _median([r["cpu_cores"][p] for r in runs]) for p in PROCESSES},
        "cpu_ms_per_request": {p: _median([r["cpu_ms_per_request"][p] for r in runs]) for p in PROCESSES},
        "server_rss_peak_kb": max((r["memory"]["server_rss_peak_kb"] or 0 for r in runs), default=None),
        "problems": sum(len(r["problems"]) for r in runs),
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _label(scenario: dict[str, Any]) -> str:
    return f"{scenario['transport']} {scenario['workload']} c{scenario['concurrency']}"


def markdown(results: dict[str, Any], source: Path | None = None) -> str:
    machine = results.get("machine", {})
    settings = results.get("settings", {})
    by_name = {s["name"]: s for s in results.get("scenarios", [])}
    lines = [
        f"# Superlike benchmark ({results.get('mode', '?')} run, {results.get('started_at', '?')})",
        "",
        f"Machine: {machine.get('nproc')} CPUs ({machine.get('cpu_model')}), {machine.get('mem_total_mb')} MB, "
        f"kernel {machine.get('kernel')}, Python {machine.get('python')}, grpcio {machine.get('grpcio')}, "
        f"{machine.get('envoy')}, "
        f"{machine.get('wrk', '').split(' [')[0]}, {machine.get('h2load')}.",
        f"Each scenario: {settings.get('warmup_s')} s warm-up, then {settings.get('runs')} run(s) of "
        f"{settings.get('duration_s')} s; median [min–max] over the runs. {settings.get('senders')} senders, "
        f"{settings.get('streams')} spread streams + 1 hot stream, price {settings.get('price')}; REST "
        f"Idempotency-Key: {settings.get('rest_idempotency_keys')}; gRPC calls carry no key. "
        f"Server env overrides: {settings.get('server_env') or 'none'}. Code fingerprint "
        f"{results.get('code_fingerprint', '?')} (server/, gen/, envoy/ at the start; per database below).",
        "",
        "`× ceiling`: req/s over the gRPC health check (no database work) on the same path at the same "
        "concurrency: through Envoy for REST and gRPC-via-Envoy, direct for direct gRPC (for REST and the "
        "reads the ceiling is gRPC from h2load, the figure HTTP/1.1 from wrk: another client and protocol, "
        "not the same work minus the service's). CPU columns are "
        "cores busy (CPU seconds / wall seconds) per process over the run; `ms CPU/req` is server·Envoy·PostgreSQL "
        "CPU milliseconds per request. The load tools share the 2 cores with the stack. `spread` and `hot` "
        "send superlikes; `list` reads a history page (`pageSize=20`) and `top` the top supporters (`limit=10`) "
        "of the spread streams in turn, over REST through Envoy.",
        "",
        "| scenario | req/s | × ceiling | p50 / p90 / p99 ms | errors | server cores | Envoy cores | PG cores | tool cores | ms CPU/req srv·envoy·pg | server RSS peak MB |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for scenario in results.get("scenarios", []):
        groups.setdefault(scenario["db"], []).append(scenario)
    for db, scenarios in groups.items():
        lines.append(f"| **{db}** | | | | | | | | | | |")
        for scenario in scenarios:
            s = scenario["summary"]
            ceiling = by_name.get(scenario.get("ceiling") or "")
            ratio = "–"
            if ceiling and ceiling["summary"]["rps_median"] and s["rps_median"] is not None:
                ratio = f"{s['rps_median'] / ceiling['summary']['rps_median']:.2f}"
            cores, per_req = s["cpu_cores"], s["cpu_ms_per_request"]
            rps = f"{_fmt(s['rps_median'], 0)} [{_fmt(s['rps_min'], 0)}–{_fmt(s['rps_max'], 0)}]"
            latency = f"{_fmt(s['p50_ms'])} / {_fmt(s['p90_ms'])} / {_fmt(s['p99_ms'])}"
            errors = str(s["errors"]) + (
                f" (expected {s['non_2xx']}×{scenario['expected_status']})"
                if scenario["expected_status"] != 200
                else ""
            )
            if s["problems"]:
                errors += f" ⚠ {s['problems']} failed checks"
            cpu_req = " · ".join(_fmt(per_req[p], 2) for p in ("server", "envoy", "postgres"))
            rss = _fmt((s["server_rss_peak_kb"] or 0) / 1024, 0) if s["server_rss_peak_kb"] else "–"
            lines.append(
                f"| {_label(scenario)} | {rps} | {ratio} | {latency} | {errors} | {_fmt(cores['server'], 2)} | "
                f"{_fmt(cores['envoy'], 2)} | {_fmt(cores['postgres'], 2)} | {_fmt(cores['load_tool'], 2)} | "
                f"{cpu_req} | {rss} |"
            )
    lines += ["", "Databases:", ""]
    for db, phase in results.get("databases", {}).items():
        audit = phase.get("audit", {})
        report = audit.get("report", {})
        memory = phase.get("memory", {})
        mb = lambda v: "?" if v is None else f"{v / 1024:.0f} MB"  # noqa: E731
        lines.append(
            f"- **{db}** ({phase.get('version', '?')}; server code {phase.get('code_fingerprint', 'not recorded')}): "
            f"{phase.get('superlikes_total', '?')} superlikes written; "
            f"audit exit {audit.get('exit_code', '?')}, ok={report.get('ok')}, wallets {report.get('wallets')}, "
            f"superlikes {report.get('superlikes')}, balances {report.get('totalBalance')} = issued "
            f"{report.get('coinsIssued')}; server log ERROR lines: {phase.get('server_log_errors', '?')}; server RSS {mb(memory.get('server_rss_start_kb'))} at the start of the "
            f"phase, {mb(memory.get('server_rss_end_kb'))} at its end, peak {mb(memory.get('server_rss_peak_kb'))}."
        )
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = results.get("scenarios", [])
    if not scenarios:
        return
    names = [f"{s['db']} · {_label(s)}" for s in scenarios]
    rps = [s["summary"]["rps_median"] or 0 for s in scenarios]
    low = [max(0.0, (s["summary"]["rps_median"] or 0) - (s["summary"]["rps_min"] or 0)) for s in scenarios]
    high = [max(0.0, (s["summary"]["rps_max"] or 0) - (s["summary"]["rps_median"] or 0)) for s in scenarios]
    p99 = [s["summary"]["p99_ms"] or 0 for s in scenarios]
    p99_low = [max(0.0, (s["summary"]["p99_ms"] or 0) - (s["summary"]["p99_ms_min"] or 0)) for s in scenarios]
    p99_high = [max(0.0, (s["summary"]["p99_ms_max"] or 0) - (s["summary"]["p99_ms"] or 0)) for s in scenarios]
    palette = {"baseline": "#9e9e9e", "sqlite": "#1f77b4", "postgres": "#2ca02c"}
    colors = [palette.get(s["db"], "#ff7f0e") for s in scenarios]
    height = max(4.0, 0.32 * len(scenarios) + 1.5)
    figure, (left, right) = plt.subplots(1, 2, figsize=(15, height), sharey=True)
    positions = list(range(len(scenarios)))[::-1]
    left.barh(positions, rps, xerr=[low, high], color=colors, capsize=2)
    left.set_xlabel("requests/s (median, min–max)")
    left.set_yticks(positions, names, fontsize=8)
    for y, value, extra in zip(positions, rps, high, strict=True):
        left.text(value + extra, y, f" {value:.0f}", va="center", fontsize=7)
    right.barh(positions, p99, xerr=[p99_low, p99_high], color=colors, capsize=2)
    right.set_xlabel("p99 latency ms (median, min–max)")
    for y, value, extra in zip(positions, p99, p99_high, strict=True):
        right.text(value + extra, y, f" {value:.1f}", va="center", fontsize=7)
    save_chart(
        figure,
        results,
        "Superlikes (spread/hot: send; list/top: read)",
        path,
        legend="; grey: health-check ceiling, blue: SQLite, green: PostgreSQL",
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
