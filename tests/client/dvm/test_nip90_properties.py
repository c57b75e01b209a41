"""Arbitrary tags and content never crash the NIP-90 parsers: JobRejected or a parsed value."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.dvm.nip90 import JobSpec, build_job, parse_feedback, parse_request, parse_result
from client.nostr.errors import JobRejected
from client.nostr.event import Event
from client.nostr.keys import Keys

CUSTOMER = Keys.generate()
PROVIDER = Keys.generate()
JOB = build_job(CUSTOMER, JobSpec(prompt="p"))
SEALED = build_job(
    CUSTOMER, JobSpec(prompt="p", targets=(PROVIDER.public_key,), encryption="nip44")
)

names = st.sampled_from(
    [
        "i",
        "param",
        "bid",
        "e",
        "p",
        "amount",
        "status",
        "request",
        "encrypted",
        "expiration",
        "relays",
        "output",
        "x",
    ]
)
values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            JOB.id,
            SEALED.id,
            CUSTOMER.public_key,
            "1000",
            "-1",
            "lnbc1",
            "{}",
            "prompt",
            "text",
            "top-k",
            "max_tokens",
            "temperature",
            "nan",
            "1e400",
        ]
    ),
)
tags = st.lists(
    st.tuples(names, st.lists(values, max_size=3)).map(lambda t: [t[0], *t[1]]), max_size=8
)
contents = st.one_of(st.text(max_size=50), st.just("A" * 140), st.just("abc?iv=def"))
relaxed = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
long_run = settings(relaxed, max_examples=10_000)


def _event(keys: Keys, kind: int, content: str, t: list[list[str]]) -> Event:
    return Event.create(keys, kind, content, t, created_at=JOB.created_at)


def _request_total(t: list[list[str]], content: str, kind: int) -> None:
    try:
        req = parse_request(_event(CUSTOMER, kind, content, t), keys=PROVIDER, now=0)
    except JobRejected:
        return
    assert req.prompt


def _replies_total(t: list[list[str]], content: str, kind: int, sealed: bool) -> None:
    job = SEALED if sealed else JOB
    ev = _event(PROVIDER, kind, content, t)
    for parse in (parse_result, parse_feedback):
        try:
            parse(ev, job, CUSTOMER)
        except JobRejected:
            pass


request_args = (tags, contents, st.sampled_from([5050, 5100]))
reply_args = (tags, contents, st.sampled_from([6050, 7000, 6100]), st.booleans())
test_parse_request_total = relaxed(given(*request_args)(_request_total))
test_parse_replies_total = relaxed(given(*reply_args)(_replies_total))
test_parse_request_fuzz = pytest.mark.fuzz(long_run(given(*request_args)(_request_total)))
test_parse_replies_fuzz = pytest.mark.fuzz(long_run(given(*reply_args)(_replies_total)))
