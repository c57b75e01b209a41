"""Selection policies choose as specified; exploration gives newcomers a share; block-lists,
allow-lists and quorum membership are enforced; the gated quorum counts members only."""

from __future__ import annotations

import random

import pytest

from client.customer.directory import ProviderDirectory
from client.customer.quorum import Vote, normalized
from client.customer.reputation import Observation, ReputationLedger
from client.customer.selection import (
    AccessList,
    BestReputation,
    Broadcast,
    Candidate,
    Cheapest,
    Explore,
    Fastest,
    GatedQuorum,
    QuorumMembership,
    Selector,
    policy_by_name,
    success_probability,
)
from client.nostr.errors import InvalidKey, NoProvidersAvailable
from client.nostr.keys import Keys
from tests.support.announcements import FakeClock, announcement

RNG = random.Random(0)

CANDS = [
    Candidate("good", score=0.9, experience=20, latency_ms=900, price_msats=3000),
    Candidate("cheap", score=0.6, experience=10, latency_ms=1500, price_msats=500),
    Candidate("fast", score=0.7, experience=10, latency_ms=200, price_msats=2000),
    Candidate("liar", score=0.1, experience=10, latency_ms=100, price_msats=100),
    Candidate("new", score=0.5, experience=0, latency_ms=None, price_msats=1000),
]


def keys_of(cs: list[Candidate]) -> list[str]:
    return [c.pubkey for c in cs]


def test_best_reputation() -> None:
    assert keys_of(BestReputation().choose(CANDS, 3, RNG)) == ["good", "fast", "cheap"]
    # Ties on score: more experience first.
    tied = [Candidate("a", 0.8, 1), Candidate("b", 0.8, 9)]
    assert keys_of(BestReputation().choose(tied, 1, RNG)) == ["b"]


def test_cheapest_under_a_reputation_floor() -> None:
    # The liar is cheapest but below the floor; the newcomer (0.5) is allowed at floor 0.5.
    assert keys_of(Cheapest(floor=0.5).choose(CANDS, 3, RNG)) == ["cheap", "new", "fast"]
    assert keys_of(Cheapest(floor=0.65, strict=True).choose(CANDS, 3, RNG)) == ["fast", "good"]
    assert keys_of(Cheapest(floor=0.0).choose(CANDS, 1, RNG)) == ["liar"]
    # Too few above the floor: the best of the rest fill up (a fresh ledger still works), the
    # known liar last.
    assert keys_of(Cheapest(floor=0.65).choose(CANDS, 4, RNG)) == ["fast", "good", "cheap", "new"]
    assert keys_of(Cheapest(floor=0.95).choose(CANDS, 5, RNG))[-1] == "liar"


def test_fastest_puts_unknown_latency_last() -> None:
    order = ["liar", "fast", "good", "cheap", "new"]
    assert keys_of(Fastest(floor=0.0).choose(CANDS, 5, RNG)) == order
    # By default a known liar is not fast enough to be worth it (only if nobody else is left).
    assert keys_of(Fastest().choose(CANDS, 4, RNG)) == ["fast", "good", "cheap", "new"]
    assert keys_of(Fastest(strict=True).choose(CANDS, 5, RNG)) == ["fast", "good", "cheap", "new"]


def test_policy_by_name() -> None:
    assert isinstance(policy_by_name("best"), BestReputation)
    assert policy_by_name("cheapest").floor == 0.5
    assert isinstance(policy_by_name("explore", share=0.3), Explore)
    assert isinstance(policy_by_name("broadcast"), Broadcast)
    with pytest.raises(ValueError, match="unknown policy"):
        policy_by_name("random")


def test_exploration_gives_newcomers_their_share() -> None:
    veterans = [Candidate(f"v{i}", 0.9 - i * 0.01, 50) for i in range(6)]
    newcomers = [Candidate(f"n{i}", 0.5, 0) for i in range(3)]
    cands = veterans + newcomers
    jobs = 4000
    for share in (0.0, 0.1, 0.3):
        rng = random.Random(42)
        policy = Explore(BestReputation(), share=share, slots=1)
        with_newcomer = 0
        per_newcomer = dict.fromkeys(keys_of(newcomers), 0)
        for _ in range(jobs):
            chosen = policy.choose(cands, 3, rng)
            assert len(chosen) == 3 and len(set(keys_of(chosen))) == 3
            fresh = [c.pubkey for c in chosen if c.pubkey.startswith("n")]
            assert len(fresh) <= 1
            with_newcomer += bool(fresh)
            for f in fresh:
                per_newcomer[f] += 1
        assert with_newcomer / jobs == pytest.approx(share, abs=0.025)
        if share:
            # Spread over the newcomers; the best veterans keep the other places.
            assert min(per_newcomer.values()) > 0.2 * with_newcomer
    # Without exploration newcomers never get in: best reputation alone.
    assert all(
        not c.pubkey.startswith("n") for c in BestReputation().choose(cands, 3, random.Random(1))
    )


def test_exploration_is_repeatable_with_a_seed() -> None:
    cands = [Candidate(f"v{i}", 0.9, 50) for i in range(4)] + [Candidate("n", 0.5, 0)]

    def run(seed: int) -> list[list[str]]:
        rng = random.Random(seed)
        return [keys_of(Explore(share=0.5).choose(cands, 2, rng)) for _ in range(50)]

    assert run(3) == run(3) and run(3) != run(4)


def test_access_lists_parse_npubs_and_block_wins() -> None:
    a, b = Keys.generate(), Keys.generate()
    acl = AccessList.parse(allow=[a.npub, b.public_key], block=[b.npub])
    assert acl.permits(a.public_key) and not acl.permits(b.public_key)
    assert not acl.permits(Keys.generate().public_key)
    assert AccessList.parse(block=[a.npub]).permits(b.public_key)
    with pytest.raises(InvalidKey):
        AccessList.parse(block=["npub1notakey"])


def make_selector(clock: FakeClock, **kw: object) -> tuple[Selector, list[Keys]]:
    ks = [Keys.generate() for _ in range(5)]
    d = ProviderDirectory(clock=clock)
    for k in ks:
        d.offer(announcement(k, int(clock.now)))
    led = ReputationLedger(clock=clock)
    return Selector(directory=d, ledger=led, **kw), ks  # type: ignore[arg-type]


def test_selector_never_picks_blocked_or_dead_providers() -> None:
    clock = FakeClock(1000)
    sel, ks = make_selector(clock)
    blocked = ks[0]
    sel.access = AccessList.parse(block=[blocked.npub])
    for _ in range(20):
        pick = sel.select(2, model="llama3")
        assert blocked.public_key not in pick.targets and len(pick.targets) == 3
    assert sel.counts(blocked.public_key) is False
    # Dead providers (heartbeat missed) are not candidates.
    assert sel.directory is not None
    sel.directory.offer(announcement(ks[1], 1000 + 250))
    clock.advance(400)
    assert [c.pubkey for c in sel.candidates()] == [ks[1].public_key]
    with pytest.raises(NoProvidersAvailable, match="quorum 2"):
        sel.select(2)


def test_selector_ranks_by_the_ledger_and_prices_from_the_directory() -> None:
    clock = FakeClock(1000)
    sel, ks = make_selector(clock)
    assert sel.ledger is not None
    sel.ledger.record([Observation(ks[3].public_key, "agreed")] * 5)
    sel.ledger.record([Observation(ks[4].public_key, "agreed")] * 3)
    sel.ledger.record([Observation(ks[0].public_key, "dissented")] * 2)
    pick = sel.select(2)
    assert pick.targets[:2] == (ks[3].public_key, ks[4].public_key)
    assert ks[0].public_key not in pick.targets and not pick.broadcast
    assert pick.members == frozenset(pick.targets)
    c = {c.pubkey: c for c in sel.candidates("llama3", prompt_tokens=400, max_tokens=100)}
    assert c[ks[1].public_key].price_msats == 2000  # the announced minimum
    sel.policy = Broadcast()
    b = sel.select(2)
    assert b.broadcast and b.targets == ()


def test_membership_keeps_newcomers_out_of_quorums_but_lets_them_observe() -> None:
    clock = FakeClock(1000)
    trusted = Keys.generate()
    sel, ks = make_selector(
        clock,
        membership=QuorumMembership.parse(allow=[trusted.npub], floor=0.6),
        policy=Explore(BestReputation(), share=1.0),
        seed=1,
    )
    assert sel.ledger is not None and sel.directory is not None
    sel.directory.offer(announcement(trusted, 1000))
    sel.ledger.record([Observation(ks[0].public_key, "agreed")] * 4)  # earned: 5/6 > 0.6
    pick = sel.select(2)
    assert pick.members == {trusted.public_key, ks[0].public_key}
    assert len(pick.observers) == 1 and pick.observers[0] in {k.public_key for k in ks[1:]}
    assert pick.explored == pick.observers
    # Too few members for a bigger quorum, whatever the number of fresh keys.
    with pytest.raises(NoProvidersAvailable, match="may count"):
        sel.select(3)


def test_gated_quorum_counts_members_only() -> None:
    q = GatedQuorum(2, 2, normalized(), admit={"a", "b"}.__contains__)
    q.add(Vote("sybil1", "Lyon"))
    q.abstain("sybil3")  # a stranger's error does not make the job give up
    d = q.add(Vote("sybil2", "Lyon"))
    assert not d.reached and not d.exhausted and set(q.observers) == {"sybil1", "sybil2"}
    assert q.has_voted("sybil1")
    q.add(Vote("a", "Paris"))
    d = q.add(Vote("b", "paris."))
    assert d.reached and d.text == "Paris" and set(d.agreeing) == {"a", "b"}
    assert "sybil1" not in d.dissenting


def test_figures_from_the_ledger() -> None:
    clock = FakeClock(1000)
    sel, ks = make_selector(clock)
    assert sel.figures(2) is None  # nobody has a record yet
    assert sel.ledger is not None
    for i, k in enumerate(ks[:3]):
        sel.ledger.record([Observation(k.public_key, "agreed", 100.0 * (i + 1), 1000)] * 8)
    f = sel.figures(2)
    assert f is not None and f.providers == 3
    assert f.latency_ms == pytest.approx(200.0)  # the 2nd fastest of the chosen
    assert 0.0 < f.failure_rate < 0.1
    assert f.price_msats == 4000  # two of the announced 2000-msat minimums


def test_success_probability() -> None:
    assert success_probability([1.0, 1.0], 2) == 1.0
    assert success_probability([0.5, 0.5], 1) == pytest.approx(0.75)
    assert success_probability([0.9, 0.9, 0.9], 2) == pytest.approx(0.972)
    assert success_probability([0.9], 2) == 0.0
