"""feed-latest.md and feed-latest.png from a bench/feed.py results file.

.venv/bin/python bench/feed_reporting.py bench/results/feed-<timestamp>.json   # redraw both
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Runnable as a script from the repository root, like bench/feed.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reporting import redraw, save_chart  # noqa: E402


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def _cores(result: dict[str, Any], *names: str) -> str:
    cores = result["cpu_cores"]
    return " · ".join("–" if cores.get(n) is None else f"{cores[n]:.2f}" for n in names)


def _client_cores(result: dict[str, Any]) -> str:
    cores = [v for k, v in result["cpu_cores"].items() if k.startswith("client") and v is not None]
    return f"{sum(cores):.2f} ({len(cores)} proc)"


def _mb(kb: int | None) -> str:
    return "–" if not kb else f"{kb / 1024:.0f}"


def _meets_delivery(result: dict[str, Any], targets: dict[str, float]) -> bool:
    p99 = result["delivery_ms_from_server_timestamp"]["p99"]
    return bool(
        result["subscribers_failing"] == 0
        and result["drained_all"]
        and p99 is not None
        and p99 <= targets["delivery_p99_ms"]
    )


def _verdict(result: dict[str, Any], targets: dict[str, float]) -> str:
    delivery = result["delivery_ms_from_server_timestamp"]["p99"]
    send = result["send"]["latency_ms"]["p99"]
    parts = [
        "exactly once, in order"
        if result["subscribers_failing"] == 0 and result["drained_all"]
        else f"**{result['subscribers_failing']} subscribers failed** {result['violations']}"
    ]
    parts.append(
        "delivery p99 met"
        if delivery is not None and delivery <= targets["delivery_p99_ms"]
        else "**delivery p99 missed**"
    )
    parts.append("send p99 met" if send is not None and send <= targets["send_p99_ms"] else "**send p99 missed**")
    return "; ".join(parts)


def _row(result: dict[str, Any], name: str, targets: dict[str, float]) -> str:
    t, d, s = (
        result["delivery_ms_from_answer"],
        result["delivery_ms_from_server_timestamp"],
        result["send"]["latency_ms"],
    )
    mem = result["memory"]
    return (
        f"| {name} | {result['subscribers']:,} × {result['rate']:g}/s × {result['duration_s']:g} s | "
        f"{result['events_delivered']:,} / {result['expected_superlikes'] * result['subscribers']:,} | "
        f"{_ms(d['p50'])} / {_ms(d['p99'])} ({_ms(t['p50'])} / {_ms(t['p99'])}) | {_ms(s['p50'])} / {_ms(s['p99'])} "
        f"({result['send']['failed_count']} failed) | "
        f"{_cores(result, 'server', 'envoy')} · {_client_cores(result)} | "
        f"{_ms(result['cpu_us_per_chunk'].get('server'))} · {_ms(result['cpu_us_per_chunk'].get('envoy'))} | "
        f"{result['events_per_chunk']} | {_mb(mem.get('server_rss_peak_kb'))} · {_mb(mem.get('envoy_rss_peak_kb'))} | "
        f"{_verdict(result, targets)} |"
    )


HEADER = (
    "| run | subscribers × rate × time | events received / expected | delivery p50 / p99 ms (from the answer) "
    "| send p50 / p99 ms (sends not answered 200) | cores: server · Envoy · clients | µs CPU per chunk: server · Envoy | events per chunk "
    "| peak RSS MB: server · Envoy | verdict |\n|---|---|---:|---|---|---|---|---:|---|---|"
)


def markdown(results: dict[str, Any], source: Path | None = None) -> str:
    targets = results["targets"]
    machine = results.get("machine", {})
    lines = [
        f"# Live feed benchmark ({results.get('mode')} run {results.get('started_at')})",
        "",
        f"{machine.get('nproc')} CPUs {machine.get('cpu_model')}, {machine.get('envoy')}, Python {machine.get('python')}; "
        f"load average at start {' '.join(results.get('loadavg_at_start', []))}, at end {' '.join(results.get('loadavg_at_end', []))}. "
        + (f"Source: `{source.name}`." if source else ""),
        "",
        f"Targets: delivery p99 ≤ {targets['delivery_p99_ms']:g} ms, send p99 ≤ {targets['send_p99_ms']:g} ms. Delivery "
        "latency = arrival at the subscriber of the HTTP chunk holding the event − the superlike's `timestamp` (the "
        "server's clock when it accepted the request, before the write: an upper bound of commit → client). In "
        "brackets: measured from the arrival of the send's HTTP answer instead, which is after the commit; it reads "
        "too low (even negative) when answers are late, as they are whenever send p99 is missed. Both clocks are this "
        "machine's.",
        "",
    ]
    if results.get("interrupted"):
        lines += ["**Interrupted: partial results.**", ""]
    if results.get("hot"):
        lines += ["## One hot stream", "", HEADER]
        lines += [_row(r, r["db"], targets) for r in results["hot"]]
        lines.append("")
    if results.get("curve"):
        lines += [
            "## Capacity curve (each row of subscribers stops at its first miss)",
            "",
            "| db | subscribers | rate/s | delivery p50 / p99 ms | send p99 ms (failed) | events per chunk | cores server · Envoy · clients | µs CPU per chunk server · Envoy | meets delivery target |",
            "|---|---:|---:|---|---|---:|---|---|---|",
        ]
        for r in results["curve"]:
            d = r["delivery_ms_from_server_timestamp"]
            ok = (
                "yes"
                if _meets_delivery(r, targets)
                else (
                    "**no**"
                    + (
                        ""
                        if r["subscribers_failing"] == 0 and r["drained_all"]
                        else f" ({r['subscribers_failing']} subscribers incomplete)"
                    )
                )
            )
            lines.append(
                f"| {r['db']} | {r['subscribers']:,} | {r['rate']:g} | {_ms(d['p50'])} / {_ms(d['p99'])} | "
                f"{_ms(r['send']['latency_ms']['p99'])} ({r['send']['failed_count']}) | {r['events_per_chunk']} | "
                f"{_cores(r, 'server', 'envoy')} · {_client_cores(r)} | "
                f"{_ms(r['cpu_us_per_chunk'].get('server'))} · {_ms(r['cpu_us_per_chunk'].get('envoy'))} | {ok} |"
            )
        lines.append("")
    if results.get("replicas"):
        lines += ["## Two replicas on PostgreSQL", "", HEADER]
        for r in results["replicas"]:
            lines.append(_row(r, r["label"].rsplit("/", 1)[-1], targets))
        lines.append("")
        for r in results["replicas"]:
            lines.append(
                f"- `{r['label']}`: {r['setup']}; {r['subscribers_reconnected']} subscribers reconnected "
                f"({r['connections']} connections, {r['refused_responses']} refused answers while "
                f"reconnecting, {r['error_events']} error events; streams broke "
                f"{_ms(r.get('breaks_after_action_ms', {}).get('p0'))}–{_ms(r.get('breaks_after_action_ms', {}).get('max'))} ms after the kill; from a broken stream to the next 200: "
                f"p50 {_ms(r.get('reconnect_gap_ms', {}).get('p50'))} ms, max {_ms(r.get('reconnect_gap_ms', {}).get('max'))} ms); {r['subscribers_failing']} subscribers "
                f"with a missing, repeated or misordered superlike; delivery p99 {_ms(r.get('delivery_ms_uninterrupted_subscribers', {}).get('p99'))} ms "
                f"for subscribers never cut off, {_ms(r.get('delivery_ms_reconnected_subscribers', {}).get('p99'))} ms "
                f"(max {_ms(r.get('delivery_ms_reconnected_subscribers', {}).get('max'))}) for those that reconnected."
            )
        lines.append("")
    return "\n".join(lines)


def write_markdown(results: dict[str, Any], path: Path, source: Path | None = None) -> str:
    text = markdown(results, source)
    path.write_text(text + "\n")
    return text


def write_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = results.get("curve", [])
    points = results.get("hot", []) + results.get("replicas", [])
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    for subscribers in sorted({r["subscribers"] for r in curve}):
        row = [r for r in curve if r["subscribers"] == subscribers]
        left.plot(
            [r["rate"] for r in row],
            [r["delivery_ms_from_server_timestamp"]["p99"] or 0 for r in row],
            marker="o",
            label=f"{subscribers:,} subscribers",
        )
    left.axhline(results["targets"]["delivery_p99_ms"], color="red", linestyle="--", label="target p99")
    left.set_yscale("log")
    left.set_xlabel("superlikes sent per second (one stream)")
    left.set_ylabel("p99 ms (log): delivery solid, send dotted")
    left.set_title("capacity curve" + (f" ({curve[0]['db']})" if curve else ""))
    left.legend(fontsize=8)
    names = [p.get("db") or p["label"].rsplit("/", 1)[-1] for p in points]
    for subscribers in sorted({r["subscribers"] for r in curve}):
        row = [r for r in curve if r["subscribers"] == subscribers]
        left.plot(
            [r["rate"] for r in row],
            [r["send"]["latency_ms"]["p99"] or 0 for r in row],
            linestyle=":",
            marker="x",
            color=left.lines[
                [line.get_label() for line in left.lines].index(f"{subscribers:,} subscribers")
            ].get_color(),
            label=f"send p99, {subscribers:,}",
        )
    positions = range(len(points))
    p50 = [p["delivery_ms_from_server_timestamp"]["p50"] or 0 for p in points]
    p99 = [p["delivery_ms_from_server_timestamp"]["p99"] or 0 for p in points]
    send = [p["send"]["latency_ms"]["p99"] or 0 for p in points]
    width = 0.27
    right.bar([i - width for i in positions], p50, width, label="delivery p50")
    right.bar(list(positions), p99, width, label="delivery p99")
    right.bar([i + width for i in positions], send, width, label="send p99")
    right.set_xticks(list(positions), names, fontsize=8)
    right.set_ylabel("ms (log)")
    right.set_yscale("log")
    right.set_title(
        f"{points[0]['subscribers'] if points else ''} subscribers, {points[0]['rate'] if points else ''}/s"
    )
    right.legend(fontsize=8)
    save_chart(figure, results, "Live feed", path)


def main(argv: list[str]) -> int:
    return redraw(argv, "feed_reporting.py", "feed-latest", write_markdown, write_chart)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
