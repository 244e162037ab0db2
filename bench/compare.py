"""Compares two sets of benchmark results (an A/B of two commits, run alternately in one sitting).

    .venv/bin/python bench/compare.py --base a1.json a2.json --new b1.json b2.json [--concurrency 64]

For every scenario both sides measured, it pools the measured runs of each side (every run of every
results file) and prints a markdown table: median req/s and p99 with their min–max, the change of the
medians, and the CPU milliseconds per request of the server, Envoy and PostgreSQL, which a busy
machine disturbs less than throughput (another process taking a core slows every request down, but
does not make a request cost more CPU). PostgreSQL's figure is every `postgres` process on the
machine, so other users of the same PostgreSQL server count in it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

STACK = ("server", "envoy", "postgres")


def _runs(files: list[Path], concurrency: set[int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Scenario name -> its measured runs over all files (the references, db "baseline", left out)."""
    pooled: dict[str, list[dict[str, Any]]] = {}
    for path in files:
        results = json.loads(path.read_text())
        for scenario in results["scenarios"]:
            if scenario["db"] == "baseline" or (concurrency and scenario["concurrency"] not in concurrency):
                continue
            for run in scenario["runs"]:
                pooled.setdefault(scenario["name"], []).append(
                    {
                        "rps": run["rps"],
                        "p99": run["latency_ms"]["p99"],
                        **run["cpu_ms_per_request"],
                    }
                )
    return pooled


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.median(values) if values else None


def _span(runs: list[dict[str, Any]], key: str, digits: int) -> str:
    values = [r[key] for r in runs if r[key] is not None]
    median = statistics.median(values)
    return f"{median:.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def _change(base: float | None, new: float | None) -> str:
    return "–" if not base or new is None else f"{100 * (new / base - 1):+.1f} %"


def _cpu_change(base: float | None, new: float | None) -> str:
    if base is None or new is None:
        return "–"
    return f"{base:.2f} → {new:.2f} ({_change(base, new)})"


def table(base_files: list[Path], new_files: list[Path], concurrency: set[int] | None = None) -> str:
    base, new = _runs(base_files, concurrency), _runs(new_files, concurrency)
    lines = [
        f"Runs pooled per side: base {len(base_files)} file(s), new {len(new_files)} file(s); "
        "median [min–max] over every measured run.",
        "",
        "| scenario | req/s base | req/s new | Δ req/s | p99 ms base | p99 ms new | Δ p99 "
        "| CPU ms/req base → new: server · Envoy · PostgreSQL |",
        "|---|---|---|---:|---|---|---:|---|",
    ]
    for name in base:
        if name not in new:
            continue
        b, n = base[name], new[name]
        cpu = " · ".join(_cpu_change(_median(b, p), _median(n, p)) for p in STACK)
        lines.append(
            f"| {name} | {_span(b, 'rps', 0)} | {_span(n, 'rps', 0)} | {_change(_median(b, 'rps'), _median(n, 'rps'))} "
            f"| {_span(b, 'p99', 1)} | {_span(n, 'p99', 1)} | {_change(_median(b, 'p99'), _median(n, 'p99'))} "
            f"| {cpu} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", nargs="+", type=Path, required=True, help="results JSONs of the base commit")
    parser.add_argument("--new", nargs="+", type=Path, required=True, help="results JSONs of the new commit")
    parser.add_argument("--concurrency", default="", help="only these concurrencies, e.g. 64")
    args = parser.parse_args(argv)
    only = {int(c) for c in args.concurrency.split(",") if c} or None
    print(table(args.base, args.new, only), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
