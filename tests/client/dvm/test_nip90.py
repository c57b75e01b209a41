"""NIP-90 builders and parsers: both sides, lenient names, strict checks. No I/O."""

from __future__ import annotations

import json

import pytest

from client.dvm.nip90 import (
    KIND_DELETION,
    KIND_FEEDBACK,
    KIND_TEXT_GENERATION,
    KIND_TEXT_RESULT,
    PAYMENT_REQUIRED,
    Amount,
    JobSpec,
    build_deletion,
    build_feedback,
    build_job,
    build_request,
    build_result,
    canonical_param,
    normalize_status,
    parse_amount,
    parse_feedback,
    parse_request,
    parse_result,
)
from client.nostr import nip04, nip44
from client.nostr.errors import JobError, JobRejected
from client.nostr.event import Event
from client.nostr.keys import Keys

CUSTOMER = Keys.generate()
PROVIDER = Keys.generate()
OTHER = Keys.generate()


def reason(exc: pytest.ExceptionInfo[JobRejected]) -> str:
    return exc.value.reason


def spec(**kw: object) -> JobSpec:
    base: dict[str, object] = {
        "prompt": "What is 2+2?",
        "model": "llama3",
        "max_tokens": 64,
        "temperature": 0.2,
        "seed": 7,
        "bid_msats": 10_000,
        "relays": ("ws://127.0.0.1:1",),
    }
    base.update(kw)
    return JobSpec(**base)  # type: ignore[arg-type]


# --- building requests -------------------------------------------------------------------


def test_build_request_tags() -> None:
    ev = build_request(CUSTOMER, spec(targets=(PROVIDER.public_key,), expiration=2_000_000_000))
    assert ev.kind == KIND_TEXT_GENERATION and ev.verify() and ev.content == ""
    assert ["i", "What is 2+2?", "text"] in ev.tags
    assert ["param", "model", "llama3"] in ev.tags
    assert ["param", "max_tokens", "64"] in ev.tags
    assert ["param", "temperature", "0.2"] in ev.tags
    assert ["param", "seed", "7"] in ev.tags
    assert ["bid", "10000"] in ev.tags
    assert ["relays", "ws://127.0.0.1:1"] in ev.tags
    assert ["output", "text/plain"] in ev.tags
    assert ["p", PROVIDER.public_key] in ev.tags
    assert ["expiration", "2000000000"] in ev.tags


def test_extra_params_use_canonical_names() -> None:
    ev = build_request(CUSTOMER, spec(params={"top-k": 40, "frequency_penalty": 1.0}))
    assert ["param", "top_k", "40"] in ev.tags
    assert ["param", "frequency_penalty", "1.0"] in ev.tags


@pytest.mark.parametrize(
    "kw",
    [
        {"prompt": ""},
        {"prompt": "x" * 200_001},
        {"bid_msats": -1},
        {"max_tokens": 0},
        {"targets": ("nothex",)},
        {"encryption": "nip44"},  # no targets
        {"kind": 7000},
    ],
)
def test_bad_spec_is_rejected(kw: dict[str, object]) -> None:
    with pytest.raises(JobRejected):
        spec(**kw)


def test_unencrypted_job_is_one_request() -> None:
    job = build_job(CUSTOMER, spec(targets=(PROVIDER.public_key, OTHER.public_key)))
    assert len(job.requests) == 1 and job.ids == (job.id,) and job.targets == {}
    assert job.customer == CUSTOMER.public_key and job.kind == 5050


@pytest.mark.parametrize("scheme", ["nip44", "nip04"])
def test_encrypted_job_is_one_request_per_target(scheme: str) -> None:
    job = build_job(
        CUSTOMER, spec(targets=(PROVIDER.public_key, OTHER.public_key), encryption=scheme)
    )
    assert len(job.requests) == 2
    assert set(job.targets.values()) == {PROVIDER.public_key, OTHER.public_key}
    for req in job.requests:
        assert ["encrypted"] in req.tags
        assert not req.tags_named("i") and not req.tags_named("param")
        assert "What is" not in req.content
        assert ["bid", "10000"] in req.tags
        assert req.tags_named("p") == [["p", job.targets[req.id]]]
        assert ("?iv=" in req.content) == (scheme == "nip04")


# --- provider: parsing requests ----------------------------------------------------------


def test_parse_request_round_trip() -> None:
    ev = build_request(CUSTOMER, spec(top_p=0.9, top_k=40))
    req = parse_request(ev)
    assert req.prompt == "What is 2+2?" and req.customer == CUSTOMER.public_key
    assert req.model == "llama3" and req.max_tokens == 64 and req.temperature == 0.2
    assert req.top_p == 0.9 and req.top_k == 40 and req.seed == 7
    assert req.bid_msats == 10_000 and req.relays == ("ws://127.0.0.1:1",)
    assert req.output == "text/plain" and req.encryption is None
    assert req.is_for(PROVIDER.public_key)


def test_parse_request_is_lenient_on_names() -> None:
    tags = [
        ["i", "hello", "prompt"],
        ["param", "top-k", "50"],
        ["param", "top-p", "0.7"],
        ["param", "max_new_tokens", "512.0"],
        ["param", "Temp", "0.5"],
    ]
    req = parse_request(Event.create(CUSTOMER, 5050, "", tags))
    assert req.prompt == "hello"
    assert req.top_k == 50 and req.top_p == 0.7 and req.max_tokens == 512
    assert req.temperature == 0.5
    assert canonical_param("topK") == "top_k"


def test_parse_request_input_without_type_is_text() -> None:
    req = parse_request(Event.create(CUSTOMER, 5050, "", [["i", "hi"]]))
    assert req.prompt == "hi"


@pytest.mark.parametrize(
    ("tags", "why"),
    [
        ([], "malformed"),
        ([["i", "", "text"]], "malformed"),
        ([["i", "https://x", "url"]], "unsupported_input"),
        ([["i", "x", "text"], ["param", "max_tokens"]], "malformed"),
        ([["i", "x", "text"], ["param", "max_tokens", "many"]], "malformed"),
        ([["i", "x", "text"], ["param", "max_tokens", "0"]], "malformed"),
        ([["i", "x", "text"], ["param", "temperature", "nan"]], "malformed"),
        ([["i", "x", "text"], ["param", "top_p", "1.5"]], "malformed"),
        ([["i", "x", "text"], ["param", "top-k", "5"], ["param", "top_k", "6"]], "malformed"),
        ([["i", "x", "text"], ["bid", "-5"]], "malformed"),
        ([["i", "x", "text"], ["bid", "1"], ["bid", "2"]], "malformed"),
        ([["i", "x", "text"], ["expiration", "soon"]], "malformed"),
        ([["i", "x", "text"], ["expiration", "100"]], "expired"),
        ([["i", "x" * 200_001, "text"]], "oversized"),
        ([["i", "x", "text"]] * 201, "oversized"),
    ],
)
def test_parse_request_rejects_bad_structure(tags: list[list[str]], why: str) -> None:
    ev = Event.create(CUSTOMER, 5050, "", tags)
    with pytest.raises(JobRejected) as exc:
        parse_request(ev, now=1_000)
    assert reason(exc) == why
    assert isinstance(exc.value, JobError)


def test_parse_request_rejects_forged_and_wrong_kind() -> None:
    ev = build_request(CUSTOMER, spec())
    forged = Event(ev.id, ev.pubkey, ev.created_at, ev.kind, ev.tags, "tampered", ev.sig)
    with pytest.raises(JobRejected) as exc:
        parse_request(forged)
    assert reason(exc) == "forged"
    with pytest.raises(JobRejected) as exc:
        parse_request(Event.create(CUSTOMER, 5100, "", [["i", "x", "text"]]))
    assert reason(exc) == "wrong_kind"


@pytest.mark.parametrize("scheme", ["nip44", "nip04"])
def test_encrypted_request_round_trip(scheme: str) -> None:
    job = build_job(CUSTOMER, spec(targets=(PROVIDER.public_key,), encryption=scheme))
    req = parse_request(job.requests[0], keys=PROVIDER)
    assert req.encryption == scheme
    assert req.prompt == "What is 2+2?" and req.model == "llama3" and req.bid_msats == 10_000
    with pytest.raises(JobRejected) as exc:
        parse_request(job.requests[0], keys=OTHER)
    assert reason(exc) == "not_for_us"
    with pytest.raises(JobRejected) as exc:
        parse_request(job.requests[0])
    assert reason(exc) == "not_for_us"


def test_encrypted_request_with_garbage_payload() -> None:
    tags = [["p", PROVIDER.public_key], ["encrypted"]]
    with pytest.raises(JobRejected) as exc:
        parse_request(Event.create(CUSTOMER, 5050, "A" * 200, tags), keys=PROVIDER)
    assert reason(exc) == "decrypt"
    conv = nip44.conversation_key(CUSTOMER.secret_hex, PROVIDER.public_key)
    not_tags = nip44.encrypt('{"i": 1}', conv)
    with pytest.raises(JobRejected) as exc:
        parse_request(Event.create(CUSTOMER, 5050, not_tags, tags), keys=PROVIDER)
    assert reason(exc) == "malformed"


# --- provider builds, customer parses ----------------------------------------------------


def test_result_round_trip_with_amount() -> None:
    job = build_job(CUSTOMER, spec())
    req = parse_request(job.requests[0])
    ev = build_result(PROVIDER, req, "4", amount_msats=5000, bolt11="lnbcrt50n1xyz")
    assert ev.kind == KIND_TEXT_RESULT
    assert ev.tag_value("e") == job.id and ev.tag_value("p") == CUSTOMER.public_key
    assert json.loads(ev.tag_value("request") or "")["id"] == job.id
    assert ["i", "What is 2+2?"] in ev.tags
    res = parse_result(ev, job, CUSTOMER)
    assert res.content == "4" and res.provider == PROVIDER.public_key and res.job_id == job.id
    assert res.amount == Amount(5000, "lnbcrt50n1xyz") and res.amount.sats == 5
    assert not res.encrypted


@pytest.mark.parametrize("scheme", ["nip44", "nip04"])
def test_encrypted_result_and_feedback_round_trip(scheme: str) -> None:
    job = build_job(CUSTOMER, spec(targets=(PROVIDER.public_key,), encryption=scheme))
    req = parse_request(job.requests[0], keys=PROVIDER)
    ev = build_result(PROVIDER, req, "four")
    assert ["encrypted"] in ev.tags and not ev.tags_named("i") and ev.content != "four"
    res = parse_result(ev, job, CUSTOMER)
    assert res.content == "four" and res.encrypted
    fb = build_feedback(PROVIDER, req, "partial", content="fo")
    parsed = parse_feedback(fb, job, CUSTOMER)
    assert parsed.content == "fo" and parsed.status == "partial" and parsed.encrypted


def test_encrypted_job_rejects_reply_from_another_provider() -> None:
    job = build_job(CUSTOMER, spec(targets=(PROVIDER.public_key,), encryption="nip44"))
    req = parse_request(job.requests[0], keys=PROVIDER)
    # OTHER re-signs a result for PROVIDER's sealed request.
    ev = build_result(OTHER, req, "four")
    with pytest.raises(JobRejected) as exc:
        parse_result(ev, job, CUSTOMER)
    assert reason(exc) == "wrong_provider"


def test_encrypted_job_rejects_cleartext_result() -> None:
    job = build_job(CUSTOMER, spec(targets=(PROVIDER.public_key,), encryption="nip44"))
    tags = [["e", job.id], ["p", CUSTOMER.public_key]]
    with pytest.raises(JobRejected) as exc:
        parse_result(Event.create(PROVIDER, 6050, "4", tags), job, CUSTOMER)
    assert reason(exc) == "malformed"


def _result(
    job_id: str,
    customer: str,
    content: str = "4",
    extra: list[list[str]] | None = None,
    keys: Keys = PROVIDER,
    kind: int = 6050,
    created_at: int | None = None,
) -> Event:
    tags = [["e", job_id], ["p", customer], *(extra or [])]
    return Event.create(keys, kind, content, tags, created_at=created_at)


def test_customer_strict_checks() -> None:
    job = build_job(CUSTOMER, spec())
    me = CUSTOMER.public_key
    other_job = build_job(CUSTOMER, spec(prompt="other"))
    good = _result(job.id, me)
    forged = Event(good.id, good.pubkey, good.created_at, 6050, good.tags, "5", good.sig)
    unsigned = Event(good.id, good.pubkey, good.created_at, 6050, good.tags, "4", "0" * 128)
    cases = {
        "forged": [forged, unsigned],
        "other_job": [
            _result(other_job.id, me),
            _result("f" * 64, me),
            Event.create(PROVIDER, 6050, "4", [["p", me]]),
        ],
        "other_customer": [
            _result(job.id, OTHER.public_key),
            Event.create(PROVIDER, 6050, "4", [["e", job.id]]),
        ],
        "wrong_kind": [_result(job.id, me, kind=6100)],
        "oversized": [
            _result(job.id, me, content="x" * (256 * 1024 + 1)),
            _result(job.id, me, content="é" * (128 * 1024 + 1)),
        ],
        "bad_request_tag": [
            _result(job.id, me, extra=[["request", other_job.requests[0].to_json()]]),
            _result(job.id, me, extra=[["request", "{not json"]]),
            _result(
                job.id,
                me,
                extra=[
                    ["request", json.dumps({**job.requests[0].to_dict(), "content": "changed"})]
                ],
            ),
        ],
        "malformed": [
            _result(job.id, me, extra=[["amount", "12abc"]]),
            _result(job.id, me, extra=[["amount", "1000", "notaninvoice"]]),
            _result(job.id, me, extra=[["amount", "1"], ["amount", "2"]]),
        ],
        "stale": [_result(job.id, me, created_at=job.created_at - 3600)],
    }
    for why, events in cases.items():
        for ev in events:
            with pytest.raises(JobRejected) as exc:
                parse_result(ev, job, CUSTOMER)
            assert reason(exc) == why, (why, ev.tags)
    assert parse_result(good, job, CUSTOMER).content == "4"


def test_feedback_parsing_normalizes_status() -> None:
    job = build_job(CUSTOMER, spec())
    me = CUSTOMER.public_key
    tags = [
        ["status", "Payment_Required", "pay first"],
        ["amount", "2000", "lnbc20n1abc"],
        ["e", job.id],
        ["p", me],
    ]
    fb = parse_feedback(Event.create(PROVIDER, KIND_FEEDBACK, "", tags), job, CUSTOMER)
    assert fb.status == PAYMENT_REQUIRED and fb.extra == "pay first" and fb.known
    assert fb.amount == Amount(2000, "lnbc20n1abc")
    unknown = [["status", "thinking-hard"], ["e", job.id], ["p", me]]
    fb2 = parse_feedback(Event.create(PROVIDER, KIND_FEEDBACK, "", unknown), job, CUSTOMER)
    assert fb2.status == "thinking-hard" and not fb2.known
    for bad in (
        [["e", job.id], ["p", me]],
        [["status", ""], ["e", job.id], ["p", me]],
        [["status", "a"], ["status", "b"], ["e", job.id], ["p", me]],
    ):
        with pytest.raises(JobRejected):
            parse_feedback(Event.create(PROVIDER, KIND_FEEDBACK, "", bad), job, CUSTOMER)
    assert normalize_status(" SUCCESS ") == "success"


def test_build_feedback_for_provider() -> None:
    job = build_job(CUSTOMER, spec())
    req = parse_request(job.requests[0])
    ev = build_feedback(
        PROVIDER,
        req,
        "payment_required",
        extra="10 sats",
        amount_msats=10_000,
        bolt11="lnbc100n1x",
        relay_hint="ws://r",
    )
    assert ev.tags_named("status") == [["status", "payment-required", "10 sats"]]
    assert ["amount", "10000", "lnbc100n1x"] in ev.tags
    assert ["e", job.id, "ws://r"] in ev.tags
    fb = parse_feedback(ev, job, CUSTOMER)
    assert fb.status == "payment-required" and fb.amount == Amount(10_000, "lnbc100n1x")
    with pytest.raises(JobRejected):
        build_feedback(PROVIDER, req, "processing", amount_msats=-1)


def test_parse_amount() -> None:
    assert parse_amount(["amount", "1000"]) == Amount(1000, None)
    assert parse_amount(["amount", "1000", ""]) == Amount(1000, None)
    for bad in (
        ["amount"],
        ["amount", "-1"],
        ["amount", "1.5"],
        ["amount", "1" * 19],
        ["amount", "١٢"],
    ):
        with pytest.raises(JobRejected):
            parse_amount(bad)


def test_build_deletion() -> None:
    job = build_job(
        CUSTOMER, spec(targets=(PROVIDER.public_key, OTHER.public_key), encryption="nip44")
    )
    ev = build_deletion(CUSTOMER, job.ids, reason="quorum reached")
    assert ev.kind == KIND_DELETION and ev.verify()
    assert [t[1] for t in ev.tags_named("e")] == list(job.ids)
    assert ["k", "5050"] in ev.tags and ev.content == "quorum reached"
    with pytest.raises(JobRejected):
        build_deletion(CUSTOMER, [])


def test_nip04_result_detected_by_shape() -> None:
    job = build_job(CUSTOMER, spec(targets=(PROVIDER.public_key,), encryption="nip44"))
    # A provider that only speaks NIP-04 answers a NIP-44 job: still readable.
    content = nip04.encrypt("four", PROVIDER.secret_hex, CUSTOMER.public_key)
    tags = [["e", job.id], ["p", CUSTOMER.public_key], ["encrypted"]]
    res = parse_result(Event.create(PROVIDER, 6050, content, tags), job, CUSTOMER)
    assert res.content == "four"


def test_identical_jobs_in_one_second_are_distinct_events() -> None:
    a = build_request(CUSTOMER, spec(), created_at=1_700_000_000)
    b = build_request(CUSTOMER, spec(), created_at=1_700_000_000)
    assert a.id != b.id and len(a.tags_named("nonce")) == 1
    fixed = build_request(CUSTOMER, spec(nonce="abc"), created_at=1_700_000_000)
    assert fixed.tags_named("nonce") == [["nonce", "abc"]]
    bare = build_request(CUSTOMER, spec(nonce=""), created_at=1_700_000_000)
    assert bare.tags_named("nonce") == []
    assert build_request(CUSTOMER, spec(nonce=""), created_at=1_700_000_000).id == bare.id


def test_request_tag_serialized_differently_is_still_ours() -> None:
    job = build_job(CUSTOMER, spec(prompt="ünïcode"))
    me = CUSTOMER.public_key
    d = job.requests[0].to_dict()
    other_text = json.dumps(dict(reversed(list(d.items()))), indent=1)  # other key order, ascii
    assert other_text != job.texts[job.id]
    ok = _result(job.id, me, extra=[["request", other_text]])
    assert parse_result(ok, job, CUSTOMER).content == "4"
    verbatim = _result(job.id, me, extra=[["request", job.requests[0].to_json()]])
    assert parse_result(verbatim, job, CUSTOMER).content == "4"
