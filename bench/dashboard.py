"""What publishing to the dashboard costs when nobody watches, next to not publishing at all.

    python bench/dashboard.py [--n 200000] [--rounds 5]

Rows, in nanoseconds per call (best of the rounds, interleaved so machine load hits every row
alike):

- ``no dashboard``: the loop with nothing in it (what a process without a dashboard pays);
- ``if hub.live: ...``: the guard a publisher writes before building an event;
- ``hub.publish(event)``: an event built earlier, no viewer;
- ``hub.publish(Event(...))``: the event built at the call, no viewer (the event is the only
  allocation);
- ``... one viewer``: the same with a viewer connected, for scale (the hub folds the event in).

Then the allocations of the no-viewer publishes (tracemalloc): there must be none. Target
(issue 23): with no viewer, publishing costs next to nothing: a check and a return.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from collections.abc import Callable

# bench/router.py is named like the package measured here: keep this folder off the import path.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from router.dashboard.events import ProviderStateChanged  # noqa: E402
from router.dashboard.hub import DashboardHub  # noqa: E402

JOB = "f" * 64
PROVIDER = "a" * 64


def per_call_ns(n: int, body: Callable[[int], None]) -> float:
    start = time.perf_counter_ns()
    body(n)
    return (time.perf_counter_ns() - start) / n


def loop_only(n: int) -> None:
    for _ in range(n):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=200_000, help="calls per round (default 200000)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    args = ap.parse_args()
    n, rounds = args.n, args.rounds

    idle = DashboardHub()
    watched = DashboardHub()
    watched.join(lambda: None)
    event = ProviderStateChanged(JOB, PROVIDER, "processing")

    def guard(k: int) -> None:
        hub = idle
        for _ in range(k):
            if hub.live:
                hub.publish(ProviderStateChanged(JOB, PROVIDER, "processing"))

    def publish_built(k: int) -> None:
        publish = idle.publish
        for _ in range(k):
            publish(event)

    def publish_new(k: int) -> None:
        publish = idle.publish
        for _ in range(k):
            publish(ProviderStateChanged(JOB, PROVIDER, "processing"))

    def publish_watched(k: int) -> None:
        publish = watched.publish
        for _ in range(k):
            publish(event)

    rows: dict[str, Callable[[int], None]] = {
        "no dashboard (empty loop)": loop_only,
        "if hub.live: ... (no viewer)": guard,
        "hub.publish(event) (no viewer)": publish_built,
        "hub.publish(Event(...)) (no viewer)": publish_new,
        "hub.publish(event) (one viewer)": publish_watched,
    }
    best = dict.fromkeys(rows, float("inf"))
    for _ in range(rounds):
        for name, body in rows.items():
            best[name] = min(best[name], per_call_ns(n, body))

    base = best["no dashboard (empty loop)"]
    print(f"{n:,} calls per round, best of {rounds} rounds; ns per call")
    print(f"{'':38} {'ns/call':>9} {'over the empty loop':>20}")
    for name, ns in best.items():
        extra = "" if name.startswith("no dashboard") else f"{ns - base:+.1f}"
        print(f"{name:38} {ns:9.1f} {extra:>20}")

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    publish_built(10_000)
    guard(10_000)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = [
        s
        for s in after.compare_to(before, "filename")
        if s.size_diff > 0 and "router/dashboard" in str(s.traceback)
    ]
    print(
        "allocations by the hub in 20,000 no-viewer publishes: "
        f"{sum(s.count_diff for s in grown)} blocks, {sum(s.size_diff for s in grown)} bytes"
    )


if __name__ == "__main__":
    main()
