"""Property test: indexed queries give exactly what a brute-force scan gives."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock.record import parse_record
from relay_mock.store import EventStore

NOW = 1_700_000_000
KEYS = [Keys.generate() for _ in range(3)]
IDS = ["a" * 64, "b" * 64]


def make(i: int, who: int, kind: int, at: int, tags: list[list[str]]) -> Event:
    return Event.create(KEYS[who], kind, f"c{i}", tags, created_at=NOW + at)


event_specs = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from([1, 7, 1000]),
        st.integers(0, 4),
        st.lists(
            st.sampled_from([["e", IDS[0]], ["e", IDS[1]], ["t", "x"], ["t", "y"], ["T", "x"]]),
            max_size=3,
        ),
    ),
    max_size=25,
)
filters = st.builds(
    lambda kinds, authors, tags, since, until, limit: Filter(
        kinds=kinds, authors=authors, tags=tags, since=since, until=until, limit=limit
    ),
    st.none() | st.lists(st.sampled_from([1, 7, 1000, 5]), min_size=1, max_size=2),
    st.none() | st.lists(st.sampled_from([k.public_key for k in KEYS]), min_size=1, max_size=2),
    st.none()
    | st.dictionaries(
        st.sampled_from(["e", "t"]),
        st.lists(st.sampled_from([*IDS, "x", "y"]), min_size=1),
        min_size=1,
        max_size=2,
    ),
    st.none() | st.integers(NOW, NOW + 4),
    st.none() | st.integers(NOW, NOW + 4),
    st.none() | st.integers(0, 6),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_specs, st.lists(filters, min_size=1, max_size=3))
def test_query_matches_brute_force(specs, fs) -> None:  # type: ignore[no-untyped-def]
    store = EventStore()
    events = [make(i, *spec) for i, spec in enumerate(specs)]
    for e in events:
        raw = e.to_json()
        store.add(parse_record(json.loads(raw), raw), NOW)
    got = [r.id for r in store.query(fs, NOW, max_limit=1000, default_limit=None)]
    expected: dict[str, Event] = {}
    for f in fs:
        matching = sorted((e for e in events if f.matches(e)), key=lambda e: (-e.created_at, e.id))
        for e in matching[: f.limit if f.limit is not None else None]:
            expected[e.id] = e
    ordered = sorted(expected.values(), key=lambda e: (-e.created_at, e.id))
    assert got == [e.id for e in ordered]
