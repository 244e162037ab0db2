"""Summarise a py-spy raw profile (`py-spy record -f raw -o F -p <server pid>`) as text.

    .venv/bin/python bench/profile_summary.py F > bench/results/profile-<db>.txt

Prints the share of samples per function, inclusive (the function and what it calls) and self, for
the event-loop thread and for the helper threads (the SQLite driver's worker, grpc's pollers).
"""

from __future__ import annotations

import sys
from collections import Counter


def _name(frame: str) -> str:
    function, _, location = frame.partition(" (")
    return f"{function} ({location.split(':')[0].rsplit('/', 1)[-1]})" if location else function


def summarise(path: str, top: int = 30) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in open(path):
        stack, _, count = line.rstrip().rpartition(" ")
        samples = int(count)
        frames = [_name(f) for f in stack.split(";")]
        total += samples
        threads["worker threads" if frames[0].startswith("Thread._bootstrap") else "event loop thread"] += samples
        for name in set(frames):
            inclusive[name] += samples
        own[frames[-1]] += samples
    lines = [f"{total} samples; " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in threads.most_common())]
    lines.append("\ninclusive (function and its callees):")
    lines += [f"{100 * v / total:5.1f}%  {k}" for k, v in inclusive.most_common(top)]
    lines.append("\nself (time in the function's own code, including native code it calls):")
    lines += [f"{100 * v / total:5.1f}%  {k}" for k, v in own.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarise(sys.argv[1]))
