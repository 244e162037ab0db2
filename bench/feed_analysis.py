"""The live-feed benchmark's checks and numbers: what every subscriber received against the stream's
own order (read from storage), delivery latency, the send path's latency."""

from __future__ import annotations

import itertools
from array import array
from typing import Any

try:
    import numpy
except ImportError:  # the chart's dependency; percentiles fall back to sorting in Python
    numpy = None


def percentiles(values: array | list[float], points: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[str, float | None]:
    """Milliseconds, nearest-rank on the sorted values (the same on both code paths)."""
    if not len(values):
        return {f"p{p:g}": None for p in points} | {"max": None}
    if numpy is not None:
        data = numpy.sort(
            numpy.frombuffer(values, dtype=numpy.float64) if isinstance(values, array) else numpy.array(values)
        )
    else:
        data = sorted(values)
    n = len(data)
    result = {f"p{p:g}": round(1000 * float(data[min(n - 1, int(p / 100 * n))]), 1) for p in points}
    result["max"] = round(1000 * float(data[-1]), 1)
    return result


def send_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in records if r.get("status") == 200]
    latency = array("d", (r["answered"] - r["started"] for r in answered))
    late = max((r["started"] - r["due"] for r in records), default=0.0)
    return {
        "sent": len(records),
        "answered_200": len(answered),
        "failed": [r for r in records if r.get("status") != 200][:5],
        "failed_count": len(records) - len(answered),
        "retried": sum(r["attempts"] > 1 for r in records),
        "latency_ms": percentiles(latency),
        "max_start_lateness_ms": round(1000 * late, 1),
    }


def check_and_measure(
    expected: list[str], records: list[dict[str, Any]], fleets: list[dict[str, Any]]
) -> dict[str, Any]:
    """`expected`: the stream's superlikes since the subscribers started, in position order.
    Every subscriber must have received exactly that sequence."""
    position_of = {superlike_id: i for i, superlike_id in enumerate(expected)}
    answer_at = array("d", [float("nan")] * len(expected))
    server_at = array("d", [float("nan")] * len(expected))
    for record in records:
        index = position_of.get(record.get("superlike_id"))
        if index is not None:
            answer_at[index] = record["answered"]
            server_at[index] = record["server_ms"] / 1000
    sent_ids = {r.get("superlike_id") for r in records if r.get("status") == 200}
    from_answer, from_server, reconnected_latency = array("d"), array("d"), array("d")
    uninterrupted_latency = array("d")
    violations = {"missing": 0, "duplicates": 0, "out_of_order": 0, "unknown": 0}
    failing, examples, subscribers, chunks, connections, events = 0, [], 0, 0, 0, 0
    reconnected, refused, error_events, gaps = 0, 0, 0, array("d")
    want = list(range(len(expected)))
    for fleet in fleets:
        local = [position_of.get(superlike_id, -1) for superlike_id in fleet["order"]]
        for sub in fleet["subscribers"]:
            subscribers += 1
            sequence = [local[i] for i in sub["ids"]]
            events += len(sequence)
            chunks += sub["superlike_chunks"]
            connections += sub["connections"]
            reconnected += sub["connections"] > 1
            refused += len(sub["refused"])
            error_events += len(sub["error_events"])
            gaps.extend(sub.get("gaps", []))
            latencies = reconnected_latency if sub["connections"] > 1 else uninterrupted_latency
            for position, received in zip(sequence, sub["times"], strict=True):
                if position >= 0:
                    from_answer.append(received - answer_at[position])
                    from_server.append(received - server_at[position])
                    latencies.append(received - answer_at[position])
            if sequence == want:
                continue
            failing += 1
            seen = set(sequence)
            problem = {
                "missing": len(set(want) - seen),
                "duplicates": len(sequence) - len(seen),
                "unknown": sequence.count(-1),
                "out_of_order": sum(a > b for a, b in itertools.pairwise(sequence)),
            }
            for key, value in problem.items():
                violations[key] += value
            if len(examples) < 5:
                examples.append(
                    {
                        "subscriber": sub["index"],
                        "port": sub["port"],
                        "received": len(sequence),
                        "connections": sub["connections"],
                        **problem,
                        "error_events": sub["error_events"][:2],
                        "refused": sub["refused"][:5],
                    }
                )
    return {
        "expected_superlikes": len(expected),
        "sent_and_answered_match_stream": sent_ids == set(expected),
        "subscribers": subscribers,
        "events_delivered": events,
        "superlike_chunks": chunks,
        "events_per_chunk": round(events / chunks, 3) if chunks else None,
        "subscribers_failing": failing,
        "violations": violations,
        "violation_examples": examples,
        "connections": connections,
        "subscribers_reconnected": reconnected,
        "refused_responses": refused,
        "reconnect_gap_ms": percentiles(gaps, (50, 99)),
        "error_events": error_events,
        "delivery_ms_from_answer": percentiles(array("d", (v for v in from_answer if v == v))),
        "delivery_ms_from_server_timestamp": percentiles(array("d", (v for v in from_server if v == v))),
        # Subscribers that lost their connection (a replica killed): their latency includes the reconnect.
        "delivery_ms_reconnected_subscribers": percentiles(array("d", (v for v in reconnected_latency if v == v))),
        "delivery_ms_uninterrupted_subscribers": percentiles(array("d", (v for v in uninterrupted_latency if v == v))),
        "samples_before_answer": sum(1 for v in from_answer if v < 0),
    }
