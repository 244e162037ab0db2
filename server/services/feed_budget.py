"""How often the live feed may write to its subscribers: one budget of chunk writes per second for
the whole server process, shared by every stream it follows.

Each write of a chunk to one subscriber costs about the same whatever it holds (~80-120 µs of the
server process in grpc.aio, ~40-60 µs of Envoy, on the bench machine), and the loop that writes them also serves SendSuperlike. Left
alone, a stream's fan-out writes once per committed batch per subscriber: 1,000 subscribers of a
stream taking 50 superlikes/s would cost 50,000 writes/s, more than the loop has. So each stream's
pump books every slice of its fan-out (a few dozen subscribers, feed_hub.py) here before writing
it, and waits what the booking says: while the process writes less than its budget, nothing (a
lone subscriber gets every batch at once); beyond it, slices are spaced so the process stays within
it, evenly rather than in bursts, and each tick carries everything committed since the previous one.
The cost then follows the budget, not the send rate: 1,000 subscribers at a 5,000 writes/s budget
get a chunk every 0.2 s however many superlikes arrive (latency grows with the subscribers of all
the process's streams together, whose slices interleave: about twice those subscribers / budget, a
tick's wait for the one in progress and then its own round).

The configured rate assumes the process gets its core. When it does not (a crowded host, or other
work), the event loop runs late, and so does every call waiting for it: grpc.aio takes each new
call through several turns of the loop, so SendSuperlike's answers wait in line. With a floor below
1 (LIVECHAT_FEED_FANOUT_FLOOR), `follow_loop` measures how late a timer fires; while the loop is
late (the median of the last few probes, so that a lone pause, a garbage collection or a scheduling
hiccup, changes nothing) the budget shrinks, down to that share of itself, and it grows back while
the loop keeps time: subscribers get their chunks less often, sends keep more of the loop. Off by
default: on a crowded 2-core machine it cost the subscribers seconds (delivery p99 0.45 -> 2.2 s at
1,000 subscribers x 50/s) and bought the send path nothing measurable (p99 0.54 vs 0.63 s), both
measured before fan-outs were paced a slice at a time.

A virtual schedule (the "generic cell rate" algorithm): `_paid_until` is when every write booked
so far will have been paid for at the budget's rate; a booking waits for the schedule to come
within `burst_seconds` of now. Bookings are served in the order they are made, so every followed
stream gets its turn.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

# Chunk writes per second for the whole process: at most ~0.5 of a core of the server plus ~0.3 of
# Envoy on this project's 2-core bench machine, leaving the rest to the send path (bench/README.md,
# "Live feed").
DEFAULT_CHUNKS_PER_SECOND = 5000.0
# Writes that may go at once before spacing starts (at the default rate: 100 chunks).
DEFAULT_BURST_SECONDS = 0.02
# How often the event loop is probed; the loop is late when the median lateness of the last
# PROBES_JUDGED probes (0.2 s) exceeds LATE_SECONDS.
PROBE_SECONDS = 0.025
PROBES_JUDGED = 8
LATE_SECONDS = 0.010
# Per late probe the rate is multiplied by SHRINK, never below the floor (that share of the
# configured rate; DEFAULT_FLOOR: never shrinks); per timely probe it grows back by RECOVERY of the
# configured rate (from a tenth to full in ~1 s).
SHRINK = 0.8
DEFAULT_FLOOR = 1.0
RECOVERY = 0.025


class FanoutBudget:
    def __init__(
        self,
        chunks_per_second: float = DEFAULT_CHUNKS_PER_SECOND,
        *,
        floor: float = DEFAULT_FLOOR,
        burst_seconds: float = DEFAULT_BURST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`floor`: the share of `chunks_per_second` kept however late the loop runs (1.0: a fixed
        budget)."""
        if chunks_per_second <= 0:
            raise ValueError("chunks_per_second must be positive")
        if not 0 < floor <= 1:
            raise ValueError("floor must be above 0 and at most 1")
        self.full_rate = chunks_per_second
        self.rate = chunks_per_second
        self._floor_rate = chunks_per_second * floor
        # Whether follow_loop can change anything (a floor below 1).
        self.adapts = floor < 1
        self._burst_seconds = burst_seconds
        self._clock = clock
        self._paid_until = float("-inf")
        self._lateness: deque[float] = deque(maxlen=PROBES_JUDGED)

    def book(self, chunks: int) -> float:
        """Books `chunks` writes (a slice of a fan-out, one per subscriber); returns the seconds to
        wait before making them (0.0: at once)."""
        now = self._clock()
        starts = max(self._paid_until, now)
        self._paid_until = starts + chunks / self.rate
        return max(0.0, starts - now - self._burst_seconds)

    async def turn(self, chunks: int) -> None:
        """Books `chunks` writes and waits until they may be made."""
        delay = self.book(chunks)
        if delay > 0:
            await asyncio.sleep(delay)

    def observe_loop(self, late_seconds: float) -> None:
        """A timer fired this much later than asked: shrink while the loop is late, else recover."""
        self._lateness.append(late_seconds)
        if sorted(self._lateness)[len(self._lateness) // 2] > LATE_SECONDS:
            self.rate = max(self._floor_rate, self.rate * SHRINK)
        else:
            self.rate = min(self.full_rate, self.rate + self.full_rate * RECOVERY)

    async def follow_loop(self) -> None:
        """Probes the running event loop until cancelled (a background task of the server)."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + PROBE_SECONDS
            await asyncio.sleep(PROBE_SECONDS)
            self.observe_loop(loop.time() - asked)
