"""The gateway's py-spy samples, attributed to the parts of its hot path.

    python -m bench.profiles bench/results/profile-*.txt

Each sample (one collapsed stack from `py-spy record --format raw`) goes to the first category
below whose rule matches it: the first rules look for a frame anywhere in the stack (the work
done on behalf of that part, the JSON encoding of a log line included), the later ones look at
the innermost frame only. "event loop" is the loop's own C code (uvloop) and its waits: py-spy
cannot see inside it.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

RATE = 250  # samples per second (bench.gateway.profile runs py-spy at this rate)

# (category, where to look, substrings of a frame); the first match wins.
RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("logging", "any", ("(app/logs.py", "(logging/")),
    ("metrics", "any", ("(app/metrics.py",)),
    ("watchdog + ping timers", "any", ("Watchdog.", "Pings.__init__", "Pings.touch",
                                       "Pings._expired", "Pings.fired", "Pings.close")),
    ("stream checks", "any", ("check_stream_start",)),
    ("relay line splitting", "any", ("LineRelay.", "_has_marker", "account (app/relay")),
    ("uvicorn socket write", "leaf", ("RequestResponseCycle.send",)),
    ("uvicorn parsing/protocol", "leaf", ("(uvicorn/",)),
    ("aiohttp client", "leaf", ("(aiohttp/", "(multidict/", "(yarl/")),
    ("middleware layers", "any-leaf", ("(app/middleware.py", "(starlette/middleware",
                                       "(fastapi/middleware", "(fastapi/telemetry",
                                       "(starlette/_exception_handler", "(app/factory.py")),
    ("routing + validation", "leaf", ("(fastapi/", "(starlette/", "(pydantic", "(app/routers",
                                      "(app/schemas", "(app/policy")),
    ("gateway exchange (proxy, relay writes)", "leaf", ("(app/",)),
    ("json", "leaf", ("(json/",)),
    ("event loop (C) / idle", "leaf", ("Runner.run (asyncio/runners",)),
    ("asyncio (Python side)", "leaf", ("(asyncio/",)),
)


def category(frames: list[str]) -> str:
    leaf = frames[-1]
    for name, where, needles in RULES:
        if where == "any" and any(n in f for f in frames for n in needles):
            return name
        if where in ("leaf", "any-leaf") and any(n in leaf for n in needles):
            return name
    return "other"


def summarize(collapsed: Path) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            counts[category(stack.split(";"))] += int(count)
    return dict(counts)


def table(counts: dict[str, int], requests: int | None = None, tokens: int = 20) -> list[str]:
    total = sum(counts.values()) or 1
    busy = total - counts.get("event loop (C) / idle", 0)
    lines = []
    for name, n in sorted(counts.items(), key=lambda item: -item[1]):
        text = f"  {n / total:6.1%} of samples"
        if name != "event loop (C) / idle":
            text += f", {n / max(busy, 1):6.1%} of Python time"
        if requests:
            ms = n / RATE / requests * 1000
            text += f", {ms:6.3f} ms/request, {ms / tokens * 1000:6.1f} us/token"
        lines.append(f"{text}  {name}")
    return lines


def main(argv: list[str]) -> int:
    for path in argv:
        counts = summarize(Path(path))
        print(f"{path}: {sum(counts.values())} samples")
        print("\n".join(table(counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
