"""A scenario's runs summed up: the medians and ranges the report quotes."""

from __future__ import annotations

import statistics
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
        "machine_stolen_cores": _median([(r.get("machine_cores") or {}).get("stolen") for r in runs]),
        "server_rss_peak_kb": max((r["memory"]["server_rss_peak_kb"] or 0 for r in runs), default=None),
        "problems": sum(len(r["problems"]) for r in runs),
    }
