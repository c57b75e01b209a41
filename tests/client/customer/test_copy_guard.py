"""JobCollector with a CopyGuard: events in, decisions out, times by hand (no I/O)."""

from __future__ import annotations

from client.customer.copy_guard import CopyGuard, CopyPolicy
from client.customer.quorum import Quorum, normalized
from client.customer.swarm import JobCollector
from client.dvm.nip90 import JobSpec, build_feedback, build_job, build_result, parse_request
from client.dvm.sealing import build_commitment, commit, new_salt
from client.nostr.event import Event
from client.nostr.keys import Keys
from router.types import LmUsage

CUSTOMER = Keys.generate()
A, B, C = Keys.generate(), Keys.generate(), Keys.generate()
USAGE = LmUsage(1, 1, 2)


def collector(policy: CopyPolicy, k: int = 2) -> JobCollector:
    job = build_job(CUSTOMER, JobSpec(prompt="2+2?", params=policy.params()))
    c = JobCollector(
        job, CUSTOMER, Quorum(k, None, normalized()), started=0.0, guard=CopyGuard(policy)
    )
    c.mark_published(0.0)
    return c


def committed(c: JobCollector, keys: Keys, text: str) -> tuple[Event, Event]:
    """A provider's commitment feedback and its matching reveal."""
    req = parse_request(c.job.requests[0], keys=keys)
    salt = new_salt()
    fb = build_commitment(keys, req, commit(req.id, keys.public_key, text, salt))
    return fb, build_result(keys, req, text, model="m", usage=USAGE, salt=salt)


def clear_result(c: JobCollector, keys: Keys, text: str, seal: str | None = None) -> Event:
    req = parse_request(c.job.requests[0], keys=keys)
    return build_result(keys, req, text, model="m", usage=USAGE, seal=seal)


def test_prefer_counts_clear_results_as_copyable() -> None:
    c = collector(CopyPolicy("prefer"))
    c.offer(clear_result(c, A, "4", seal="nip44"), 1.0)
    assert c.offer(clear_result(c, B, "4"), 2.0)
    result = c.outcome(3.0)
    assert result.reached and result.text == "4"
    assert result.protection == {A.public_key: "sealed", B.public_key: "clear"}
    assert result.copyable == (B.public_key,)


def test_require_does_not_count_clear_results() -> None:
    c = collector(CopyPolicy("require"))
    c.offer(clear_result(c, A, "4", seal="nip44"), 1.0)
    assert not c.offer(clear_result(c, B, "4"), 2.0)
    assert c.rejected["unsealed"] == 1 and not c.decision.reached
    assert c.offer(clear_result(c, C, "4", seal="nip44"), 3.0)
    assert set(c.decision.agreeing) == {A.public_key, C.public_key}


def test_commit_reveal_window_and_rejections() -> None:
    c = collector(CopyPolicy(commit_reveal=True, window_s=5.0, quota=3))
    fa, ra = committed(c, A, "4")
    fb, rb = committed(c, B, "4")
    fc, _ = committed(c, C, "4")
    c.offer(fa, 1.0)
    c.offer(fb, 1.1)
    assert c.reveal_call(1.2) is None and c.wake_at() == 5.0
    assert c.providers[A.public_key].status == "committed"
    # Nobody has revealed and only two of three committed: the window closes at the deadline.
    assert c.reveal_call(5.0) == (A.public_key, B.public_key)
    assert c.reveal_call(5.1) is None and c.wake_at() is None
    c.offer(fc, 5.2)  # after the window closed
    assert c.rejected["late_commitment"] == 1
    # A copycat reveals A's text under its own key without a commitment.
    copy = Event.create(C, 6050, ra.content, [t for t in ra.tags])
    c.offer(copy, 5.3)
    assert c.rejected["uncommitted"] == 1
    c.offer(ra, 5.4)
    assert c.offer(rb, 5.5)
    result = c.outcome(6.0)
    assert result.reached and result.protection == {
        A.public_key: "committed",
        B.public_key: "committed",
    }
    assert result.copyable == ()


def test_a_mismatched_reveal_makes_the_quorum_impossible_early() -> None:
    c = collector(CopyPolicy(commit_reveal=True, window_s=5.0, quota=2))
    fa, ra = committed(c, A, "4")
    req = parse_request(c.job.requests[0], keys=B)
    fake = build_commitment(B, req, "00" * 32)  # committed to nothing, hoping to copy later
    c.offer(fa, 1.0)
    c.offer(fake, 1.1)
    assert c.reveal_call(1.1) == (A.public_key, B.public_key)
    c.offer(ra, 2.0)
    copy = build_result(B, req, "4", model="m", usage=USAGE, salt=new_salt())
    assert c.offer(copy, 2.1)  # decided: k=2 can no longer be reached
    assert c.rejected["reveal_mismatch"] == 1
    assert c.decision.exhausted and not c.decision.reached


def test_no_commitment_by_the_deadline_gives_up() -> None:
    c = collector(CopyPolicy(commit_reveal=True, window_s=5.0))
    req = parse_request(c.job.requests[0], keys=A)
    c.offer(build_feedback(A, req, "processing"), 1.0)
    assert c.reveal_call(5.0) == ()
    assert c.done and c.decision.exhausted
