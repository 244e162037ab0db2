"""The tables of the benchmark report (bench/reporting.py puts them together): throughput and ratios,
CPU per request per process, the edge variants and the callers comparison.

Every ratio divides by a reference measured in the same run: the no-op SendSuperlike server behind
the same Envoy config with the same load (`× no-op`), and the real server's gRPC health check
(`× health`, the second reference). In a --paired run each run is divided by its no-op twin's run of
the same round, and `× no-op` is the median of those ratios."""

from __future__ import annotations

import statistics
from typing import Any

from bench.run_summary import summarize_runs

STACK = ("server", "envoy", "postgres")


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def label(scenario: dict[str, Any], *, edge: bool = False, callers: bool = False) -> str:
    text = f"{scenario['transport']} {scenario['workload']} c{scenario['concurrency']}"
    if scenario.get("rounds_of"):
        text += f" ({scenario['rounds_of']}'s rounds)"
    if edge and scenario.get("edge", "full") != "full":
        text += f" [{scenario['edge']}]"
    if callers and scenario.get("callers_extra"):
        text += f" [{scenario['callers']:,} callers]"
    return text


def rps(scenario: dict[str, Any] | None) -> float | None:
    return None if scenario is None else scenario["summary"]["rps_median"]


def per_request(scenario: dict[str, Any] | None, process: str) -> float | None:
    return None if scenario is None else scenario["summary"]["cpu_ms_per_request"].get(process)


def total_per_request(scenario: dict[str, Any] | None) -> float | None:
    if scenario is None:
        return None
    values = [per_request(scenario, p) for p in STACK]
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def ratio(value: float | None, reference: float | None) -> str:
    return "–" if not value or not reference else f"{value / reference:.2f}"


def noop_twin(scenario: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The scenario's no-op reference: its twin's record or, when the runs were paired, the twin's
    runs of the same rounds only (a twin measured beside another database's rounds is not this one's)."""
    twin = by_name.get(scenario.get("noop") or "")
    rounds = {run.get("pair") for run in scenario["runs"]} - {None}
    if twin is None or not rounds:
        return twin
    runs = [run for run in twin["runs"] if run.get("pair") in rounds]
    return {**twin, "runs": runs, "summary": summarize_runs(runs)} if runs else None


def by_database_rounds(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """A scenario measured in several databases' paired rounds (the no-op, the health check) as one
    row per database, each over that database's rounds: the rows beside which its ratios were taken."""
    databases = list(dict.fromkeys(run["pair"].split("#")[0] for run in scenario["runs"] if run.get("pair")))
    if len(databases) < 2:
        return [scenario]
    rows = []
    for db in databases:
        runs = [run for run in scenario["runs"] if (run.get("pair") or "").startswith(f"{db}#")]
        rows.append({**scenario, "runs": runs, "summary": summarize_runs(runs), "rounds_of": db})
    return rows


def noop_ratio(scenario: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> str:
    """`× no-op`: the median of run / twin's run of the same round when paired, else median / median."""
    twin = noop_twin(scenario, by_name)
    if twin is None:
        return "–"
    twin_rps = {run["pair"]: run["rps"] for run in twin["runs"] if run.get("pair") and run["rps"]}
    paired = [run["rps"] / twin_rps[run["pair"]] for run in scenario["runs"] if run.get("pair") in twin_rps]
    return f"{statistics.median(paired):.2f}" if paired else ratio(rps(scenario), rps(twin))


def change(before: float | None, after: float | None) -> str:
    return "–" if not before or after is None else f"{100 * (after / before - 1):+.0f} %"


def is_primary(scenario: dict[str, Any]) -> bool:
    """The scenarios of the main tables: the full config and the run's first callers value."""
    return scenario.get("edge", "full") == "full" and not scenario.get("callers_extra")


def main_table(results: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | req/s | × no-op | × health | p50 / p90 / p99 ms | errors | server cores | Envoy cores | "
        "PG cores | tool cores | stolen cores | ms CPU/req srv·envoy·pg | server RSS peak MB |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for scenario in results.get("scenarios", []):
        if is_primary(scenario):
            groups.setdefault(scenario["db"], []).extend(by_database_rounds(scenario))
    for db, scenarios in groups.items():
        lines.append(f"| **{db}** |" + " |" * 12)
        for scenario in scenarios:
            s = scenario["summary"]
            noop = noop_ratio(scenario, by_name)
            health = ratio(s["rps_median"], rps(by_name.get(scenario.get("ceiling") or "")))
            cores, per_req = s["cpu_cores"], s["cpu_ms_per_request"]
            errors = str(s["errors"]) + (
                f" (expected {s['non_2xx']}×{scenario['expected_status']})"
                if scenario["expected_status"] != 200
                else ""
            )
            if s["problems"]:
                errors += f" ⚠ {s['problems']} failed checks"
            rss = fmt(s["server_rss_peak_kb"] / 1024, 0) if s["server_rss_peak_kb"] else "–"
            lines.append(
                f"| {label(scenario)} | {fmt(s['rps_median'], 0)} [{fmt(s['rps_min'], 0)}–{fmt(s['rps_max'], 0)}] | "
                f"{noop} | {health} | {fmt(s['p50_ms'])} / {fmt(s['p90_ms'])} / {fmt(s['p99_ms'])} | {errors} | "
                f"{fmt(cores['server'], 2)} | {fmt(cores['envoy'], 2)} | {fmt(cores['postgres'], 2)} | "
                f"{fmt(cores['load_tool'], 2)} | {fmt(s.get('machine_stolen_cores'), 2)} | "
                f"{' · '.join(fmt(per_req[p], 2) for p in STACK)} | {rss} |"
            )
    return lines


def cpu_table(results: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> list[str]:
    """CPU ms per request of every process, and what a superlike costs beyond the no-op's request."""
    lines = [
        "| scenario | server (no-op) | Envoy | PostgreSQL | total | load tool | no-op: server · Envoy · total | "
        "beyond the no-op: server · Envoy · total |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for scenario in (row for s in results.get("scenarios", []) for row in by_database_rounds(s)):
        if not is_primary(scenario) or scenario["workload"] in ("health", "invalid"):
            continue
        noop = noop_twin(scenario, by_name)
        total = total_per_request(scenario)
        mine = [per_request(scenario, "server"), per_request(scenario, "envoy"), total]
        reference = [per_request(noop, "server"), per_request(noop, "envoy"), total_per_request(noop)]
        beyond = [None if a is None or b is None else a - b for a, b in zip(mine, reference, strict=True)]
        name = f"{scenario['db']} {label(scenario)}"
        lines.append(
            f"| {name} | {fmt(mine[0], 2)} | {fmt(mine[1], 2)} | {fmt(per_request(scenario, 'postgres'), 2)} | "
            f"{fmt(total, 2)} | {fmt(per_request(scenario, 'load_tool'), 2)} | "
            + ("–" if noop is None else " · ".join(fmt(v, 2) for v in reference))
            + " | "
            + ("–" if noop is None else " · ".join(f"{v:+.2f}" if v is not None else "–" for v in beyond))
            + " |"
        )
    return lines


def _each_after_its_base(
    repeats: list[dict[str, Any]], by_name: dict[str, dict[str, Any]], marker: str
) -> list[tuple[dict[str, Any] | None, dict[str, Any]]]:
    """(base, row) pairs: each group of scenarios repeated with a variation (named `<base><marker>...`)
    preceded by its base scenario (the row that is `base` itself, when the run measured it)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for scenario in repeats:
        groups.setdefault(scenario["name"].split(marker)[0], []).append(scenario)
    pairs: list[tuple[dict[str, Any] | None, dict[str, Any]]] = []
    for name, rows in groups.items():
        base = by_name.get(name)
        pairs.extend((base, row) for row in ([base] if base is not None else []) + rows)
    return pairs


def edge_table(results: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> list[str]:
    """Each scenario measured behind the edge variants, next to its full-config figure."""
    variants = [s for s in results.get("scenarios", []) if s.get("edge", "full") != "full"]
    if not variants:
        return []
    lines = [
        "| scenario | edge | req/s | Δ req/s vs full | × no-op (same edge) | Envoy ms/req | Δ Envoy ms/req vs full | "
        "server ms/req | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for full, row in _each_after_its_base(variants, by_name, "/edge-"):
        envoy, full_envoy = per_request(row, "envoy"), per_request(full, "envoy")
        delta = "–" if row is full or envoy is None or full_envoy is None else f"{envoy - full_envoy:+.3f}"
        lines.append(
            f"| {row['db']} {label(row)} | {row.get('edge', 'full')} | {fmt(rps(row), 0)} | "
            f"{'–' if row is full else change(rps(full), rps(row))} | "
            f"{noop_ratio(row, by_name)} | {fmt(envoy, 3)} | {delta} | "
            f"{fmt(per_request(row, 'server'), 3)} | {fmt(row['summary']['p99_ms'])} |"
        )
    return lines


def callers_table(results: dict[str, Any], by_name: dict[str, dict[str, Any]]) -> list[str]:
    """Every scenario repeated with more callers, next to its figure at the first callers value."""
    extra = [s for s in results.get("scenarios", []) if s.get("callers_extra")]
    if not extra:
        return []
    lines = [
        "| scenario | callers | req/s | Δ req/s | server ms/req | Envoy ms/req | PostgreSQL ms/req | total ms/req | "
        "× no-op (same callers) | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for base, row in _each_after_its_base(extra, by_name, "/callers-"):
        lines.append(
            f"| {row['db']} {label(row)} | {row['callers']:,} | {fmt(rps(row), 0)} | "
            f"{'–' if row is base else change(rps(base), rps(row))} | {fmt(per_request(row, 'server'), 3)} | "
            f"{fmt(per_request(row, 'envoy'), 3)} | {fmt(per_request(row, 'postgres'), 3)} | "
            f"{fmt(total_per_request(row), 3)} | {noop_ratio(row, by_name)} | "
            f"{fmt(row['summary']['p99_ms'])} |"
        )
    return lines
