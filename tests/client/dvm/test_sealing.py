"""client.dvm.sealing and the sealed-result parsing in client.dvm.nip90: pure, no I/O, times by
hand."""

from __future__ import annotations

import pytest

from client.customer.copy_guard import CommitWindow, CopyGuard, CopyPolicy, copyable, protections
from client.customer.quorum import Quorum, Vote
from client.dvm.nip90 import (
    Job,
    JobRequest,
    JobResult,
    JobSpec,
    build_feedback,
    build_job,
    build_result,
    parse_feedback,
    parse_request,
    parse_result,
)
from client.dvm.sealing import (
    KIND_REVEAL_CALL,
    build_commitment,
    build_reveal_call,
    commit,
    commitment_of,
    commitment_preimage,
    new_salt,
    parse_reveal_call,
    salt_of,
    verify_reveal,
)
from client.nostr import nip44
from client.nostr.errors import JobRejected
from client.nostr.event import Event
from client.nostr.keys import Keys
from router.types import LmUsage

CUSTOMER = Keys.generate()
PROVIDER = Keys.generate()
OTHER = Keys.generate()
USAGE = LmUsage(3, 2, 5)
JOB_ID = "ab" * 32


def job(**params: str) -> tuple[Job, JobRequest]:
    """A cleartext job and the request as the provider parses it."""
    j = build_job(CUSTOMER, JobSpec(prompt="2+2?", params=params))
    return j, parse_request(j.requests[0], keys=PROVIDER)


# --- commitments -----------------------------------------------------------------------------


def test_commitment_binds_every_field() -> None:
    salt = new_salt()
    base = commit(JOB_ID, PROVIDER.public_key, "4", salt)
    assert len(base) == 64 and base == commit(JOB_ID, PROVIDER.public_key, "4", salt)
    assert base != commit("cd" * 32, PROVIDER.public_key, "4", salt)
    assert base != commit(JOB_ID, OTHER.public_key, "4", salt)
    assert base != commit(JOB_ID, PROVIDER.public_key, "5", salt)
    assert base != commit(JOB_ID, PROVIDER.public_key, "4", new_salt())
    assert verify_reveal(base, JOB_ID, PROVIDER.public_key, "4", salt)
    assert not verify_reveal(base, JOB_ID, PROVIDER.public_key, "4 ", salt)


def test_canonical_encoding_keeps_fields_apart() -> None:
    # Plain concatenation would make these two the same preimage.
    assert commitment_preimage("j", "p", "ab", "c") != commitment_preimage("j", "p", "a", "bc")
    pre = commitment_preimage("j", "p", 'a"é\n', "s")
    assert pre == '["nostr-swarm/commit/1","j","p","a\\"é\\n","s"]'.encode()


def test_salts_are_fresh_hex() -> None:
    a, b = new_salt(), new_salt()
    assert a != b and len(a) == 64 and int(a, 16) >= 0


# --- wire ------------------------------------------------------------------------------------


def test_commitment_feedback_round_trip() -> None:
    j, req = job(commit="sha256")
    value = commit(req.id, PROVIDER.public_key, "4", new_salt())
    event = build_commitment(PROVIDER, req, value)
    fb = parse_feedback(event, j, CUSTOMER)
    assert fb.status == "processing" and commitment_of(fb.event) == value
    with pytest.raises(JobRejected) as exc:
        build_commitment(PROVIDER, req, "not hex")
    assert exc.value.reason == "malformed"


@pytest.mark.parametrize(
    "tags",
    [
        [["commitment", "ab" * 31]],
        [["commitment", "AB" * 32]],
        [["commitment"]],
        [["commitment", "ab" * 32], ["commitment", "cd" * 32]],
    ],
)
def test_commitment_tag_is_strict(tags: list[list[str]]) -> None:
    event = Event.create(PROVIDER, 7000, "", [["status", "processing"], *tags])
    with pytest.raises(JobRejected) as exc:
        commitment_of(event)
    assert exc.value.reason == "malformed"


def test_reveal_call_round_trip_and_strictness() -> None:
    j, _ = job(commit="sha256")
    call = build_reveal_call(CUSTOMER, j, [PROVIDER.public_key, PROVIDER.public_key])
    assert call.kind == KIND_REVEAL_CALL
    parsed = parse_reveal_call(call)
    assert parsed.request_ids == (j.id,) and parsed.customer == CUSTOMER.public_key
    assert parsed.names(PROVIDER.public_key) and not parsed.names(OTHER.public_key)
    assert parsed.kind == 5050 and call.tags.count(["p", PROVIDER.public_key]) == 1
    bad = [
        Event.create(CUSTOMER, 7000, "", [["e", j.id]]),
        Event.create(CUSTOMER, KIND_REVEAL_CALL, "", [["p", PROVIDER.public_key]]),
        Event.create(CUSTOMER, KIND_REVEAL_CALL, "", [["e", "x"]]),
        Event.create(CUSTOMER, KIND_REVEAL_CALL, "", [["e", j.id], ["p", "npub"]]),
        Event.create(CUSTOMER, KIND_REVEAL_CALL, "", [["e", j.id], ["k", "50x"]]),
    ]
    for event in bad:
        with pytest.raises(JobRejected):
            parse_reveal_call(event)


def test_policy_params() -> None:
    assert CopyPolicy().params() == {}
    assert CopyPolicy("prefer").params() == {"sealed": "nip44"}
    both = CopyPolicy("require", commit_reveal=True).params()
    assert both == {"sealed": "nip44", "commit": "sha256"}
    for bad in ({"sealing": "maybe"}, {"window_s": 0}, {"quota": 0}):
        with pytest.raises(ValueError):
            CopyPolicy(**bad)  # type: ignore[arg-type]


# --- sealed results (client.dvm.nip90.parse_result) ----------------------------------------------


def test_sealed_result_is_decrypted() -> None:
    j, req = job(sealed="nip44")
    event = build_result(PROVIDER, req, "4", model="m", usage=USAGE, seal="nip44")
    assert event.content != "4" and ["sealed", "nip44"] in event.tags
    res = parse_result(event, j, CUSTOMER)
    assert res.content == "4" and res.sealed and not res.encrypted


def test_copied_ciphertext_does_not_open() -> None:
    """A copycat re-signing an honest provider's sealed content: sealed under another key pair."""
    j, req = job(sealed="nip44")
    honest = build_result(PROVIDER, req, "4", model="m", usage=USAGE, seal="nip44")
    copy = Event.create(OTHER, 6050, honest.content, [t for t in honest.tags if t[0] != "amount"])
    with pytest.raises(JobRejected) as exc:
        parse_result(copy, j, CUSTOMER)
    assert exc.value.reason == "decrypt"


def test_unknown_seal_scheme_and_duplicate_tags_are_malformed() -> None:
    j, _ = job()
    ok = nip44.encrypt("4", nip44.conversation_key(PROVIDER.secret_hex, CUSTOMER.public_key))
    base = [["e", j.id], ["p", CUSTOMER.public_key]]
    for extra in ([["sealed", "nip04"]], [["sealed", "nip44"], ["sealed", "nip44"]]):
        event = Event.create(PROVIDER, 6050, ok, base + extra)
        with pytest.raises(JobRejected) as exc:
            parse_result(event, j, CUSTOMER)
        assert exc.value.reason == "malformed"


# --- the commitment window -------------------------------------------------------------------


def test_window_closes_at_deadline_quota_or_first_readable_answer() -> None:
    w = CommitWindow(window_s=5.0)
    assert not w.due(1e9)  # not open yet: no deadline
    w.open(100.0)
    w.offer("a", JOB_ID, "00" * 32, "e1", 101.0)
    assert not w.due(104.9) and w.due(105.0)
    q = CommitWindow(window_s=5.0, quota=2)
    q.open(0.0)
    q.offer("a", JOB_ID, "00" * 32, "e1", 0.1)
    assert not q.due(0.2)
    q.offer("b", JOB_ID, "00" * 32, "e2", 0.2)
    assert q.due(0.2) and q.close(0.3) == ("a", "b") and not q.due(0.4)
    r = CommitWindow(window_s=5.0)
    r.open(0.0)
    r.note_readable_answer(1.0)
    assert r.due(1.0)


def test_late_and_second_commitments_are_refused() -> None:
    w = CommitWindow(window_s=5.0)
    w.open(0.0)
    w.offer("a", JOB_ID, "00" * 32, "e1", 1.0)
    with pytest.raises(JobRejected) as exc:
        w.offer("a", JOB_ID, "11" * 32, "e2", 1.5)
    assert exc.value.reason == "second_commitment"
    w.note_readable_answer(2.0)
    with pytest.raises(JobRejected) as exc:
        w.offer("b", JOB_ID, "00" * 32, "e3", 2.5)  # after another provider's answer was public
    assert exc.value.reason == "late_commitment"
    w2 = CommitWindow(window_s=5.0)
    w2.open(0.0)
    w2.close(5.0)
    with pytest.raises(JobRejected) as exc:
        w2.offer("c", JOB_ID, "00" * 32, "e4", 5.1)
    assert exc.value.reason == "late_commitment"


def test_reveals_must_open_their_commitment_once() -> None:
    salt = new_salt()
    w = CommitWindow(window_s=5.0)
    w.open(0.0)
    w.offer("a", JOB_ID, commit(JOB_ID, "a", "4", salt), "e1", 1.0)
    w.offer("b", JOB_ID, commit(JOB_ID, "b", "4", salt), "e2", 1.0)
    w.close(2.0)
    w.check_reveal("a", JOB_ID, "4", salt)
    with pytest.raises(JobRejected) as exc:
        w.check_reveal("a", JOB_ID, "4", salt)
    assert exc.value.reason == "second_vote"
    with pytest.raises(JobRejected) as exc:
        w.check_reveal("b", JOB_ID, "5", salt)
    assert exc.value.reason == "reveal_mismatch"
    with pytest.raises(JobRejected) as exc:
        w.check_reveal("c", JOB_ID, "4", salt)
    assert exc.value.reason == "uncommitted"


# --- the guard -------------------------------------------------------------------------------


def result(
    text: str, *, provider: Keys = PROVIDER, sealed: bool = False, salt: str = ""
) -> JobResult:
    tags = [["e", JOB_ID], ["p", CUSTOMER.public_key]] + ([["salt", salt]] if salt else [])
    event = Event.create(provider, 6050, text, tags)
    return JobResult(event, provider.public_key, JOB_ID, text, None, False, sealed)


def test_guard_protection_by_sealing_mode() -> None:
    clear, sealed = result("4"), result("4", sealed=True)
    assert CopyGuard().on_result(clear, 0.0) == "clear"
    assert CopyGuard().on_result(sealed, 0.0) == "sealed"
    assert CopyGuard(CopyPolicy("prefer")).on_result(clear, 0.0) == "clear"
    guard = CopyGuard(CopyPolicy("require"))
    assert guard.on_result(sealed, 0.0) == "sealed"
    with pytest.raises(JobRejected) as exc:
        guard.on_result(clear, 0.0)
    assert exc.value.reason == "unsealed"


def test_guard_commit_reveal_flow() -> None:
    j, req = job(commit="sha256")
    salt = new_salt()
    guard = CopyGuard(CopyPolicy(commit_reveal=True, window_s=10.0, quota=1))
    guard.start(0.0)
    assert guard.wake_at() == 10.0 and guard.take_reveal_call(0.0) is None
    fb = parse_feedback(
        build_commitment(PROVIDER, req, commit(req.id, PROVIDER.public_key, "4", salt)), j, CUSTOMER
    )
    plain = parse_feedback(build_feedback(OTHER, req, "processing"), j, CUSTOMER)
    assert guard.on_feedback(plain, 0.5) is False
    assert guard.on_feedback(fb, 1.0) is True
    assert guard.take_reveal_call(1.0) == (PROVIDER.public_key,)
    assert guard.take_reveal_call(1.1) is None and guard.wake_at() is None
    reveal = build_result(PROVIDER, req, "4", model="m", usage=USAGE, salt=salt)
    assert guard.on_result(parse_result(reveal, j, CUSTOMER), 2.0) == "committed"
    # A copycat that copies the text but never committed in time.
    copy = build_result(OTHER, req, "4", model="m", usage=USAGE, salt=salt)
    with pytest.raises(JobRejected) as exc:
        guard.on_result(parse_result(copy, j, CUSTOMER), 2.1)
    assert exc.value.reason == "uncommitted"


def test_guard_knows_when_the_committed_cannot_reach_k() -> None:
    guard = CopyGuard(CopyPolicy(commit_reveal=True, window_s=1.0))
    guard.start(0.0)
    assert guard.window is not None
    guard.window.offer("a", JOB_ID, "00" * 32, "e1", 0.5)
    guard.window.offer("b", JOB_ID, "00" * 32, "e2", 0.5)
    q = Quorum(2)
    assert not guard.hopeless(q.decision())  # window still open
    assert guard.take_reveal_call(1.0) == ("a", "b")
    d = q.add(Vote("a", "4", protection="committed"))
    assert not guard.hopeless(d)
    guard.gone.add("b")  # b's reveal did not match
    assert guard.hopeless(d)


def test_protections_and_copyable() -> None:
    q = Quorum(3)
    q.add(Vote("a", "4", protection="sealed"))
    q.add(Vote("b", "4", protection="clear"))
    d = q.add(Vote("c", "4", protection="committed"))
    assert protections(d) == {"a": "sealed", "b": "clear", "c": "committed"}
    assert copyable(d) == ("b",) and copyable(d, ["a", "c"]) == ()
    assert salt_of(result("4").event) is None
