"""The customer's collector (NIP-90 reply parsing plus the quorum) fed near-miss replies.

Results and feedback for a job, from its providers and from strangers, with tags and content
changed and then signed properly (so the signature check passes and the NIP-90 checks must do the
work), repeated, or meant for another job. Whatever arrives:

- ``JobCollector.offer`` never raises;
- every event offered before the outcome is decided is accounted for exactly once: a result, a
  feedback, or a rejection under a reason;
- a reached quorum has ``k`` distinct agreeing providers, each with an accepted result that agrees
  with the decided text; no provider has two votes.
(Totality of the parsers alone over arbitrary tags is tests/client/dvm/test_nip90_properties.py.)
"""

from __future__ import annotations

import pytest
from hypothesis import given

from client.customer.quorum import Quorum, normalize_text
from client.customer.swarm import JobCollector
from client.dvm.nip90 import JobSpec, build_feedback, build_job, build_result, parse_request
from client.nostr.errors import InvalidEvent
from client.nostr.event import Event
from client.nostr.keys import Keys

from .mutate import Mutator
from .profiles import DEEP, QUICK, seeds

CUSTOMER = Keys.generate()
PROVIDERS = [Keys.generate() for _ in range(4)]
STRANGER = Keys.generate()
JOB = build_job(CUSTOMER, JobSpec(prompt="2+2?", bid_msats=5000), created_at=1_800_000_000)
OTHER = build_job(CUSTOMER, JobSpec(prompt="3+3?"), created_at=1_800_000_000)
REQ = parse_request(JOB.requests[0])
OTHER_REQ = parse_request(OTHER.requests[0])
ANSWERS = ["4", "4.", " four", "5", "", "4" * 300]
STATUSES = ["processing", "error", "success", "payment-required", "partial", "weird"]


def _reply(m: Mutator) -> Event:
    r = m.r
    keys = r.choice([*PROVIDERS, STRANGER])
    req = REQ if r.random() < 0.9 else OTHER_REQ
    ts = 1_800_000_000 + r.choice([0, 0, 0, 5, 5, -700])
    if r.random() < 0.6:
        ev = build_result(
            keys, req, r.choice(ANSWERS), amount_msats=r.choice([None, 2000]), created_at=ts
        )
    else:
        ev = build_feedback(
            keys, req, r.choice(STATUSES), amount_msats=r.choice([None, 2000]), created_at=ts
        )
    if r.random() < 0.5:
        return ev
    tags = m.mutate(ev.tags)
    content = ev.content if r.random() < 0.7 else m.text(20)
    kind = ev.kind if r.random() < 0.9 else r.choice([6050, 7000, 6100, 1])
    try:
        return Event.create(
            keys, kind, content, tags if isinstance(tags, list) else [], created_at=ts
        )
    except (InvalidEvent, TypeError):  # the mutation broke the tag structure: not signable
        return ev


def collector_case(seed: int) -> None:
    m = Mutator(seed)
    k = m.r.choice([1, 2, 3])
    collector = JobCollector(JOB, CUSTOMER, Quorum(k, 4), started=0.0)
    sent: list[Event] = []
    counted = 0
    for step in range(m.r.randrange(1, 9)):
        ev = m.r.choice(sent) if sent and m.r.random() < 0.15 else _reply(m)
        sent.append(ev)
        if collector.done:
            collector.offer(ev, float(step))
            continue
        counted += 1
        collector.offer(ev, float(step))
    accounted = len(collector.results) + len(collector.feedback)
    assert accounted + sum(collector.rejected.values()) == counted, collector.rejected
    voters = [res.provider for res in collector.results]
    assert len(voters) == len(set(voters))
    d = collector.decision
    if d.reached:
        assert d.text is not None and len(set(d.agreeing)) >= k
        by_provider = {res.provider: res for res in collector.results}
        for p in d.agreeing:
            assert normalize_text(by_provider[p].content) == normalize_text(d.text)
        out = collector.outcome(10.0)
        assert set(out.agreeing) <= set(voters) and out.reached


@QUICK
@given(seeds)
def test_collector_takes_any_reply(seed: int) -> None:
    collector_case(seed)


@pytest.mark.fuzz
@DEEP
@given(seeds)
def test_fuzz_collector_takes_any_reply(seed: int) -> None:
    collector_case(seed)
