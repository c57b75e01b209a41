"""The pure event store: kind classes, replacement ties, NIP-09, NIP-40, ordering and indexes."""

from __future__ import annotations

import json

from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock.record import Record, parse_record
from relay_mock.store import EventStore

NOW = 1_700_000_000


def rec(event: Event) -> Record:
    raw = event.to_json()
    return parse_record(json.loads(raw), raw)


def ev(
    keys: Keys, kind: int = 1, content: str = "", tags: list[list[str]] | None = None, at: int = NOW
) -> Event:
    return Event.create(keys, kind, content, tags or [], created_at=at)


def q(store: EventStore, *filters: Filter, now: int = NOW) -> list[str]:
    return [r.id for r in store.query(filters, now, max_limit=5000, default_limit=None)]


def test_regular_events_are_all_kept_and_duplicates_reported() -> None:
    k = Keys.generate()
    store = EventStore()
    a, b = ev(k, content="a"), ev(k, content="b")
    assert store.add(rec(a), NOW).stored is not None
    assert store.add(rec(b), NOW).accepted
    again = store.add(rec(a), NOW)
    assert again.accepted and again.message.startswith("duplicate:") and again.stored is None
    assert len(store) == 2


def test_replaceable_keeps_newest_and_refuses_older() -> None:
    k = Keys.generate()
    store = EventStore()
    old, new = ev(k, 0, "old", at=NOW), ev(k, 0, "new", at=NOW + 5)
    store.add(rec(old), NOW)
    outcome = store.add(rec(new), NOW)
    assert [r.id for r in outcome.removed] == [old.id]
    assert q(store, Filter(kinds=[0])) == [new.id]
    late = store.add(rec(ev(k, 0, "late but older", at=NOW - 1)), NOW)
    assert late.stored is None and late.message.startswith("duplicate:")
    assert q(store, Filter(kinds=[0])) == [new.id]


def test_replaceable_tie_keeps_lowest_id_whatever_the_arrival_order() -> None:
    k = Keys.generate()
    pair = sorted((ev(k, 10002, f"v{i}", at=NOW) for i in range(2)), key=lambda e: e.id)
    low, high = pair
    for order in ((low, high), (high, low)):
        store = EventStore()
        for e in order:
            store.add(rec(e), NOW)
        assert q(store, Filter(authors=[k.public_key])) == [low.id]


def test_replaceable_is_per_pubkey_and_kind() -> None:
    a, b = Keys.generate(), Keys.generate()
    store = EventStore()
    for e in (ev(a, 0), ev(a, 3), ev(b, 0), ev(a, 10000)):
        store.add(rec(e), NOW)
    assert len(store) == 4


def test_addressable_keeps_newest_per_d_tag() -> None:
    k = Keys.generate()
    store = EventStore()
    x1 = ev(k, 30078, "x1", [["d", "x"]], at=NOW)
    x2 = ev(k, 30078, "x2", [["d", "x"]], at=NOW + 1)
    y = ev(k, 30078, "y", [["d", "y"]], at=NOW)
    nod = ev(k, 30078, "no d", at=NOW)
    empty_d = ev(k, 30078, "empty d", [["d", ""]], at=NOW + 2)
    for e in (x1, y, x2, nod, empty_d):
        store.add(rec(e), NOW)
    # A missing d tag counts as "" (old NIP-33), so the later empty-d event replaced it.
    assert set(q(store, Filter(kinds=[30078]))) == {x2.id, y.id, empty_d.id}
    assert q(store, Filter(kinds=[30078], tags={"d": ["x"]})) == [x2.id]


def test_ephemeral_is_forwarded_never_stored() -> None:
    store = EventStore()
    outcome = store.add(rec(ev(Keys.generate(), 20001)), NOW)
    assert outcome.accepted and outcome.broadcast and outcome.stored is None
    assert len(store) == 0


def test_deletion_by_author_removes_and_blocks_republish() -> None:
    k, other = Keys.generate(), Keys.generate()
    store = EventStore()
    mine, theirs = ev(k, 1, "mine"), ev(other, 1, "theirs")
    store.add(rec(mine), NOW)
    store.add(rec(theirs), NOW)
    deletion = ev(k, 5, "", [["e", mine.id], ["e", theirs.id]], at=NOW + 1)
    outcome = store.add(rec(deletion), NOW)
    assert [r.id for r in outcome.removed] == [mine.id]
    assert mine.id not in store and theirs.id in store and deletion.id in store
    again = store.add(rec(mine), NOW)
    assert not again.accepted and again.message.startswith("blocked:")
    # Someone else's deletion of `theirs` has no effect on it.
    assert store.add(rec(theirs), NOW).message.startswith("duplicate:")


def test_deletion_before_the_event_arrives() -> None:
    k = Keys.generate()
    store = EventStore()
    target = ev(k, 1, "later")
    store.add(rec(ev(k, 5, "", [["e", target.id]])), NOW)
    assert not store.add(rec(target), NOW).accepted


def test_a_strangers_deletion_first_does_not_cancel_the_authors() -> None:
    author, stranger = Keys.generate(), Keys.generate()
    target = ev(author, 1, "targeted")
    # Order 1: stranger, author, then the event: it stays deleted.
    store = EventStore()
    store.add(rec(ev(stranger, 5, "", [["e", target.id]])), NOW)
    store.add(rec(ev(author, 5, "", [["e", target.id]], at=NOW + 1)), NOW)
    refused = store.add(rec(target), NOW)
    assert not refused.accepted and refused.message.startswith("blocked:")
    assert q(store, Filter(ids=[target.id])) == []
    # Order 2: stranger, the event (kept: a stranger cannot delete it), then the author.
    store = EventStore()
    store.add(rec(ev(stranger, 5, "", [["e", target.id]])), NOW)
    assert store.add(rec(target), NOW).stored is not None
    outcome = store.add(rec(ev(author, 5, "", [["e", target.id]], at=NOW + 1)), NOW)
    assert [r.id for r in outcome.removed] == [target.id]
    assert not store.add(rec(target), NOW).accepted
    assert q(store, Filter(ids=[target.id])) == []


def test_deletion_of_a_deletion_has_no_effect() -> None:
    k = Keys.generate()
    store = EventStore()
    d1 = ev(k, 5, "", [["e", "0" * 64]])
    store.add(rec(d1), NOW)
    store.add(rec(ev(k, 5, "", [["e", d1.id]], at=NOW + 1)), NOW)
    assert d1.id in store


def test_deletion_by_address_removes_versions_up_to_its_time() -> None:
    k = Keys.generate()
    store = EventStore()
    art = ev(k, 30023, "v1", [["d", "post"]], at=NOW)
    store.add(rec(art), NOW)
    store.add(rec(ev(k, 5, "", [["a", f"30023:{k.public_key}:post"]], at=NOW + 10)), NOW)
    assert art.id not in store
    older = ev(k, 30023, "v0", [["d", "post"]], at=NOW + 5)
    assert store.add(rec(older), NOW).message.startswith("blocked:")
    newer = ev(k, 30023, "v2", [["d", "post"]], at=NOW + 11)
    assert store.add(rec(newer), NOW).stored is not None


def test_expiration_refused_hidden_and_purged() -> None:
    k = Keys.generate()
    store = EventStore()
    gone = ev(k, 1, "gone", [["expiration", str(NOW - 1)]])
    assert store.add(rec(gone), NOW).message.startswith("invalid:")
    soon = ev(k, 1, "soon", [["expiration", str(NOW + 10)]])
    keep = ev(k, 1, "keep")
    store.add(rec(soon), NOW)
    store.add(rec(keep), NOW)
    assert set(q(store, Filter(authors=[k.public_key]))) == {soon.id, keep.id}
    assert q(store, Filter(authors=[k.public_key]), now=NOW + 10) == [keep.id]
    assert [r.id for r in store.purge_expired(NOW + 10)] == [soon.id]
    assert len(store) == 1


def test_limit_is_newest_first_with_ties_by_lowest_id() -> None:
    k = Keys.generate()
    store = EventStore()
    events = [ev(k, 1, f"e{i}", at=NOW + i // 3) for i in range(12)]
    for e in events:
        store.add(rec(e), NOW)
    expected = sorted(events, key=lambda e: (-e.created_at, e.id))
    assert q(store, Filter(kinds=[1], limit=5)) == [e.id for e in expected[:5]]
    assert q(store, Filter(kinds=[1])) == [e.id for e in expected]
    assert q(store, Filter(kinds=[1], limit=0)) == []


def test_since_until_inclusive_and_filters_are_or() -> None:
    a, b = Keys.generate(), Keys.generate()
    store = EventStore()
    events = [ev(a, 1, str(i), at=NOW + i) for i in range(5)] + [ev(b, 7, "r", at=NOW)]
    for e in events:
        store.add(rec(e), NOW)
    got = q(store, Filter(authors=[a.public_key], since=NOW + 1, until=NOW + 3))
    assert got == [events[3].id, events[2].id, events[1].id]
    both = q(store, Filter(kinds=[7]), Filter(authors=[a.public_key], limit=1))
    assert both == [events[4].id, events[5].id]


def test_tag_queries_use_element_one_of_single_letter_tags() -> None:
    k = Keys.generate()
    store = EventStore()
    target = "ab" * 32
    hit = ev(k, 1, "hit", [["e", target], ["p", k.public_key], ["t", "x"]])
    both = ev(k, 1, "both", [["t", "x"], ["t", "y"]])
    miss = ev(k, 1, "miss", [["e", "cd" * 32, target]])  # target only in element 2
    long_name = ev(k, 1, "long", [["topic", "x"]])
    for e in (hit, both, miss, long_name):
        store.add(rec(e), NOW)
    assert q(store, Filter(tags={"e": [target]})) == [hit.id]
    assert q(store, Filter(tags={"p": [k.public_key]})) == [hit.id]
    assert set(q(store, Filter(tags={"t": ["x", "y"]}))) == {hit.id, both.id}
    assert len(q(store, Filter(tags={"t": ["x", "y"]}))) == 2  # no duplicates


def test_queries_walk_an_index_not_the_whole_store(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    k, rare = Keys.generate(), Keys.generate()
    store = EventStore()
    for i in range(300):
        store.add(rec(ev(k, 1, str(i), at=NOW - i)), NOW)
    target = "ef" * 32
    few = [ev(rare, 7, f"r{i}", [["e", target]]) for i in range(3)]
    for e in few:
        store.add(rec(e), NOW)
    examined = 0
    original = Filter.matches

    def counting(self: Filter, event: object) -> bool:
        nonlocal examined
        examined += 1
        return original(self, event)  # type: ignore[arg-type]

    monkeypatch.setattr(Filter, "matches", counting)
    for f in (Filter(kinds=[7]), Filter(authors=[rare.public_key]), Filter(tags={"e": [target]})):
        examined = 0
        assert set(q(store, f)) == {e.id for e in few}
        assert examined == 3
    examined = 0
    assert len(q(store, Filter(kinds=[1], limit=10))) == 10
    assert examined == 10


def test_limit_ties_inside_one_second_whatever_the_arrival_order() -> None:
    k = Keys.generate()
    events = [ev(k, 1, f"same second {i}") for i in range(30)] + [ev(k, 1, "older", at=NOW - 1)]
    expected = sorted(events, key=lambda e: (-e.created_at, e.id))
    for order in (events, list(reversed(events)), sorted(events, key=lambda e: e.id)):
        store = EventStore()
        for e in order:
            store.add(rec(e), NOW)
        for limit in (1, 5, 30, 31):
            assert q(store, Filter(kinds=[1], limit=limit)) == [e.id for e in expected[:limit]]
        assert q(store, Filter(authors=[k.public_key], limit=3)) == [e.id for e in expected[:3]]


def test_count_counts_distinct_matches() -> None:
    k = Keys.generate()
    store = EventStore()
    for i in range(4):
        store.add(rec(ev(k, 1, str(i), [["t", "x"]])), NOW)
    assert store.count([Filter(kinds=[1]), Filter(tags={"t": ["x"]})], NOW) == 4


def test_unindexed_filter_merges_all_kinds_newest_first() -> None:
    k = Keys.generate()
    store = EventStore()
    events = [ev(k, kind, str(i), at=NOW + i) for i, kind in enumerate([1, 7, 1, 30000, 7, 0])]
    for e in events:
        store.add(rec(e), NOW)
    newest_first = [e.id for e in reversed(events)]
    assert q(store, Filter()) == newest_first
    assert q(store, Filter(limit=2)) == newest_first[:2]
    assert q(store, Filter(since=NOW + 3)) == newest_first[:3]
    assert [r.id for r in store.all()] == [e.id for e in events]
