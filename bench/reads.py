"""The read scenarios: a stream's history page (`list`) and its top supporters (`top`), GET through
Envoy. The request paths are written here, once, for wrk (`superlike.lua`'s `get` mode takes them in
turn) and for the probe that checks, before a scenario is measured, that its calls answer full pages:
an empty or failing read would be a cheaper call than the one users make."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

PAGE_SIZE = 20
TOP_LIMIT = 10
_QUERIES = {
    "list": f"superlikes?pageSize={PAGE_SIZE}",
    "top": f"top-supporters?limit={TOP_LIMIT}",
}
# What a full answer holds: the list key and how many items the seeded history gives every stream.
_EXPECTED = {"list": ("superlikes", PAGE_SIZE), "top": ("supporters", TOP_LIMIT)}


def path(workload: str, stream_id: str) -> str:
    return f"/api/v1/live-stream/{stream_id}/chat/{_QUERIES[workload]}"


def write_paths(workload: str, stream_ids: list[str], directory: Path) -> Path:
    """The file of request paths wrk goes through in turn, one stream after the other."""
    target = directory / f"paths-{workload}.txt"
    target.write_text("".join(path(workload, stream) + "\n" for stream in stream_ids))
    return target


def probe(base_url: str, workload: str, stream_id: str, token: str) -> str | None:
    """None when one call answers 200 with a full page, otherwise what is wrong with it."""
    request = urllib.request.Request(base_url + path(workload, stream_id), headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except OSError as error:
        return f"probe GET {path(workload, stream_id)} failed: {error}"
    key, size = _EXPECTED[workload]
    try:
        items = json.loads(body).get(key)
    except (ValueError, AttributeError):
        items = None
    if status != 200 or not isinstance(items, list) or len(items) != size:
        return f"probe GET {path(workload, stream_id)} answered {status} {body[:300]!r}, expected {size} {key}"
    return None
