"""The cyclic garbage collector of a serving process, set for a heap that is almost all built at start.

When the server starts listening, ~95,000 objects (modules, SQLAlchemy's, grpc's and protobuf's
machinery) are alive and stay alive. Under load (bench/server_cpu.py, REST at c64) CPython's defaults
made a full collection every ~2.5 s that walked all of them, ~45 ms each: a pause every call in
flight waits out, and about a tenth of the server's CPU with the young collections. Those ran ~50 times
a second (every 700 net allocations) and found the calls in flight alive (they wait tens of
milliseconds for their batch), promoting them until the old generation grew enough to trigger the
next full collection.

`gc.freeze()` moves the start-up heap into a generation no collection walks again; a higher first
threshold makes young collections rarer, so fewer short-lived objects live through one and get
promoted. Every generation is still collected, cyclic garbage included, just less often.
"""

from __future__ import annotations

import gc

# Container allocations (net of deallocations) between young collections; CPython's default is 700.
# Each young collection then walks up to this many objects (a few ms), a few times a second under load.
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_startup_heap() -> None:
    """Called once the server is up: what start-up left behind is collected, the rest frozen."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)
