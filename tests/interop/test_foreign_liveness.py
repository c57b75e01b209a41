"""Foreign DVMs in the directory and in selection, without a peer: kind-11998 heartbeats and
fresh announcements make them alive; selection asks them only after our own nodes and anyone
with a record of agreement."""

from __future__ import annotations

import json

from client.customer.directory import MAX_BEAT_S, ProviderDirectory
from client.customer.reputation import Observation, ReputationLedger
from client.customer.selection import BestReputation, Cheapest, Explore, Selector
from client.nostr.event import Event
from client.nostr.keys import Keys
from tests.support.announcements import FakeClock, announcement

T0 = 1_800_000_000


def _foreign_announcement(keys: Keys, created_at: int) -> Event:
    content = {"name": "a nostrdvm", "supportsEncryption": True, "amount": "1"}
    return Event.create(
        keys, 31990, json.dumps(content), [["k", "5050"], ["d", "dvm"]], created_at=created_at
    )


def _beat(keys: Keys, created_at: int, expiration: int | None) -> Event:
    tags = [["status", "alive"], ["d", "dvm"]]
    if expiration is not None:
        tags.append(["expiration", str(expiration)])
    return Event.create(keys, 11998, "Alive and kicking", tags, created_at=created_at)


def test_a_heartbeat_keeps_an_old_foreign_announcement_alive_until_it_expires() -> None:
    clock = FakeClock(T0)
    directory = ProviderDirectory(clock=clock)
    dvm = Keys.generate()
    directory.offer(_foreign_announcement(dvm, T0 - 86_400))
    assert directory.status(dvm.public_key) == "unknown" and not directory.alive()
    assert directory.offer(_beat(dvm, T0, T0 + 300)) is not None
    assert [i.pubkey for i in directory.alive()] == [dvm.public_key]
    assert directory.get(dvm.public_key).last_seen == T0  # type: ignore[union-attr]
    clock.advance(300)
    assert directory.status(dvm.public_key) == "stale"
    assert directory.offer(_beat(dvm, T0 - 10, T0 + 900)) is None  # older beat: no change
    assert directory.status(dvm.public_key) == "stale"


def test_a_beat_before_the_announcement_counts_and_long_expirations_are_capped() -> None:
    clock = FakeClock(T0)
    directory = ProviderDirectory(clock=clock)
    dvm = Keys.generate()
    assert directory.offer(_beat(dvm, T0, T0 + 10 * MAX_BEAT_S)) is None  # nobody to apply to
    info = directory.offer(_foreign_announcement(dvm, T0 - 86_400))
    assert info is not None and info.beat_until == T0 + MAX_BEAT_S
    assert directory.alive_keys() == [dvm.public_key]
    clock.advance(MAX_BEAT_S)
    assert directory.alive_keys() == []


def test_a_beat_without_expiration_lasts_two_beats_and_a_fresh_announcement_is_alive() -> None:
    clock = FakeClock(T0)
    directory = ProviderDirectory(clock=clock)
    dvm, other = Keys.generate(), Keys.generate()
    directory.offer(_foreign_announcement(dvm, T0 - 86_400))
    directory.offer(_beat(dvm, T0, None))
    directory.offer(_foreign_announcement(other, T0))
    assert set(directory.alive_keys()) == {dvm.public_key, other.public_key}
    clock.advance(661)
    assert directory.alive_keys() == []
    assert (directory.status(dvm.public_key), directory.status(other.public_key)) == (
        "stale",
        "unknown",
    )


def test_our_providers_liveness_ignores_heartbeats() -> None:
    clock = FakeClock(T0)
    directory = ProviderDirectory(clock=clock)
    node = Keys.generate()
    directory.offer(announcement(node, T0 - 330))  # ours, heartbeat 120 s: silent too long
    directory.offer(_beat(node, T0, T0 + 300))
    assert directory.status(node.public_key) == "stale"


def _market(ledger: ReputationLedger | None = None) -> tuple[ProviderDirectory, list[str], str]:
    directory = ProviderDirectory(clock=FakeClock(T0))
    ours = [Keys.generate() for _ in range(2)]
    for keys in ours:
        directory.offer(announcement(keys, T0, models=()))
    dvm = Keys.generate()
    directory.offer(_foreign_announcement(dvm, T0))  # cheaper than ours: 1 sat
    return directory, [k.public_key for k in ours], dvm.public_key


def test_selection_asks_a_foreign_dvm_only_when_ours_are_too_few() -> None:
    directory, ours, dvm = _market()
    for policy in (BestReputation(), Cheapest(), Explore(BestReputation(), share=1.0)):
        two = Selector(directory=directory, policy=policy, spare=0, seed=1).select(2)
        assert set(two.targets) == set(ours), policy
        three = Selector(directory=directory, policy=policy, spare=1, seed=1).select(2)
        assert set(three.targets) == {*ours, dvm}, policy


def test_a_foreign_dvm_with_a_record_of_agreement_competes_on_equal_terms() -> None:
    ledger = ReputationLedger(":memory:", clock=FakeClock(T0))
    directory, ours, dvm = _market(ledger)
    ledger.record([Observation(dvm, "agreed"), Observation(ours[0], "dissented")])
    pick = Selector(directory=directory, ledger=ledger, spare=0).select(2)
    assert dvm in pick.targets and ours[0] not in pick.targets
