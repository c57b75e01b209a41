"""Benchmark: does routing by reputation pay? Seeded simulated swarms (router.backends
SwarmSimulator) with a mix of good, slow and lying providers; every policy runs the same jobs
with a fresh reputation ledger, and broadcast - what a NIP-90 client without memory does - is
the peer, printed side by side.

Columns: success rate (jobs that agreed on the true answer), wrong (jobs that agreed on a lie),
dissent (share of the answers received that disagreed with the quorum), bad (failed jobs plus
dissenting answers over jobs plus answers), sats per answer (paid to the agreeing providers),
p50/p95 latency of successful jobs.

Swarm: 10 providers, quorum 2, timeout 10 s; 4 good (about 800 ms, 8-15 sats), 3 slow (median 4 s,
long tail, 6 sats), 3 liars (about 300 ms, 2 sats, wrong 90% of the time), shuffled. The second
table has the liars collude (the same wrong answer): what a quorum cannot catch by itself.

Also printed: the cost of one selection (directory + ledger + policy) at 10 and 200 providers.

Usage: ``python bench/reputation.py [--jobs N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import timeit
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from client.customer.directory import PriceList, ProviderDirectory, ProviderInfo  # noqa: E402
from client.customer.reputation import Observation, ReputationLedger  # noqa: E402
from client.customer.selection import (  # noqa: E402
    BestReputation,
    Broadcast,
    Cheapest,
    Explore,
    Fastest,
    QuorumMembership,
    Selector,
)
from router.backends.swarm_sim import (  # noqa: E402
    ProviderProfile,
    SimStats,
    SwarmSimConfig,
    SwarmSimulator,
    provider_key,
    sim_directory,
)


def swarm(seed: int, *, collude: bool) -> SwarmSimConfig:
    profiles = (
        [ProviderProfile.good(price_sats=p) for p in (8, 10, 12, 15)]
        + [ProviderProfile.slow(price_sats=6)] * 3
        + [ProviderProfile.liar(price_sats=2)] * 3
    )
    random.Random(seed).shuffle(profiles)
    return SwarmSimConfig(
        num_providers=len(profiles),
        quorum_size=2,
        profiles=profiles,
        timeout_ms=10_000,
        liars_collude=collude,
        seed=seed,
    )


def policies(cfg: SwarmSimConfig) -> list[tuple[str, Any, dict[str, Any]]]:
    assert cfg.profiles is not None
    good = frozenset(provider_key(i) for i, p in enumerate(cfg.profiles) if p.kind == "good")
    return [
        ("broadcast (peer)", Broadcast(), {}),
        ("best reputation", BestReputation(), {}),
        ("best + explore 10%", Explore(BestReputation(), share=0.1), {}),
        ("cheapest >= 0.5", Cheapest(floor=0.5), {}),
        ("cheapest >= 0.8", Cheapest(floor=0.8), {}),
        ("fastest >= 0.5", Fastest(floor=0.5), {}),
        ("broadcast, allow-list", Broadcast(), {"membership": QuorumMembership(allow=good)}),
    ]


def run(cfg: SwarmSimConfig, policy: Any, jobs: int, **kw: Any) -> SimStats:
    sel = Selector(
        directory=sim_directory(cfg), ledger=ReputationLedger(), policy=policy, seed=1, **kw
    )
    return SwarmSimulator(cfg, selector=sel).run(jobs)


def table(title: str, cfg: SwarmSimConfig, jobs: int) -> None:
    print(f"\n{title} ({jobs} jobs, seed {cfg.seed})")
    head = (
        f"{'policy':<24}{'success':>9}{'wrong':>8}{'dissent':>9}{'bad':>8}"
        f"{'sats/answer':>13}{'p50 ms':>9}{'p95 ms':>9}"
    )
    print(head)
    print("-" * len(head))
    for name, policy, kw in policies(cfg):
        st = run(cfg, policy, jobs, **kw)
        wrong = (st.successes - st.correct) / st.jobs
        print(
            f"{name:<24}{st.correct_rate:>9.1%}{wrong:>8.1%}{st.dissent_share:>9.1%}"
            f"{st.bad_share:>8.1%}{st.mean_cost_sats:>13.1f}"
            f"{st.latency_p50_ms:>9.0f}{st.latency_p95_ms:>9.0f}"
        )


def selection_cost(providers: int) -> float:
    """Microseconds per Selector.select over ``providers`` alive providers with records."""
    now = 1_000_000
    directory = ProviderDirectory(clock=lambda: float(now))
    ledger = ReputationLedger(clock=lambda: float(now))
    rng = random.Random(0)
    for i in range(providers):
        key = f"{i:064x}"
        directory.add(
            ProviderInfo(
                pubkey=key,
                created_at=now,
                event_id=key,
                price=PriceList(min_msats=rng.randrange(1000, 20_000)),
                heartbeat_s=120,
                swarm=True,
            )
        )
        kind = "agreed" if rng.random() < 0.8 else "dissented"
        ledger.record([Observation(key, kind, rng.uniform(200, 3000), 1000)] * 5)  # type: ignore[arg-type]
    sel = Selector(directory=directory, ledger=ledger, policy=Explore(BestReputation()), seed=1)
    n = 200
    best = min(timeit.repeat(lambda: sel.select(2), number=n, repeat=5))
    return best / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=3000, help="jobs per policy (3000)")
    ap.add_argument("--seed", type=int, default=1, help="swarm and run seed (1)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    table("Independent liars", swarm(args.seed, collude=False), args.jobs)
    table("Colluding liars (same wrong answer)", swarm(args.seed, collude=True), args.jobs)
    print("\nselection cost (directory + ledger + explore policy, quorum 2):")
    for n in (10, 200):
        print(f"  {n:>4} providers: {selection_cost(n):8.1f} us per job")
    print(f"\n(total {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
