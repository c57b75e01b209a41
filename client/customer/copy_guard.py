"""The customer's side of copy resistance: what it asks of providers (:class:`CopyPolicy`) and one
job's state (:class:`CopyGuard`: commitments, the commitment window, how each counted vote was
protected). Pure: values in, values out; times are arguments. The wire forms are in
:mod:`client.dvm.sealing`; the reasoning in ``docs/security.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from client.customer.quorum import Decision, Protection
from client.dvm.nip90 import ERROR, SEAL_NIP44, JobFeedback, JobResult
from client.dvm.sealing import (
    COMMIT_SHA256,
    PARAM_COMMIT,
    PARAM_SEALED,
    commitment_of,
    salt_of,
    verify_reveal,
)
from client.nostr.errors import JobRejected

SealingMode = Literal["off", "prefer", "require"]
SEALING_MODES: tuple[SealingMode, ...] = ("off", "prefer", "require")


# --- the customer's policy and per-job state -------------------------------------------------


@dataclass(frozen=True, slots=True)
class CopyPolicy:
    """What the customer asks of providers and what it counts.

    ``sealing``: ``off`` (do not ask; sealed results are still read), ``prefer`` (ask; clear-text
    results count, marked copyable), ``require`` (ask; clear-text results are not counted).
    ``commit_reveal``: ask for commitments first. ``window_s``: seconds after publishing at which
    the commitment window closes at the latest; ``quota``: close it as soon as this many
    commitments are in (None: only at the deadline or at the first readable answer).
    """

    sealing: SealingMode = "off"
    commit_reveal: bool = False
    window_s: float = 10.0
    quota: int | None = None

    def __post_init__(self) -> None:
        if self.sealing not in SEALING_MODES:
            raise ValueError(f"sealing must be one of {', '.join(SEALING_MODES)}")
        if self.window_s <= 0:
            raise ValueError("the commitment window must be longer than 0 s")
        if self.quota is not None and self.quota < 1:
            raise ValueError("the commitment quota must be at least 1")

    def params(self) -> dict[str, str]:
        """The request ``param`` tags that ask for this policy."""
        out: dict[str, str] = {}
        if self.sealing != "off":
            out[PARAM_SEALED] = SEAL_NIP44
        if self.commit_reveal:
            out[PARAM_COMMIT] = COMMIT_SHA256
        return out


@dataclass(frozen=True, slots=True)
class Commitment:
    provider: str
    job_id: str
    value: str
    event_id: str
    at: float


@dataclass(slots=True)
class CommitWindow:
    """The commitment window of one job. Opens when the job is published; closes at the
    deadline, when ``quota`` commitments are in, or when a readable answer appears, whichever
    comes first. Only commitments that arrived while it was open, and before any readable
    answer, count."""

    window_s: float
    quota: int | None = None
    opened_at: float | None = None
    closed_at: float | None = None
    first_reveal_at: float | None = None
    commitments: dict[str, Commitment] = field(default_factory=dict)
    spent: set[str] = field(default_factory=set)

    @property
    def deadline(self) -> float | None:
        return None if self.opened_at is None else self.opened_at + self.window_s

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def open(self, now: float) -> None:
        if self.opened_at is None:
            self.opened_at = now

    def offer(self, provider: str, job_id: str, value: str, event_id: str, now: float) -> None:
        """Record a commitment or raise :class:`JobRejected` (``late_commitment``,
        ``second_commitment``)."""
        if self.closed_at is not None:
            raise JobRejected("commitment arrived after the window closed", "late_commitment")
        if self.first_reveal_at is not None:
            raise JobRejected(
                "commitment arrived after another provider's answer was public", "late_commitment"
            )
        if provider in self.commitments:
            raise JobRejected("provider committed twice; the first stands", "second_commitment")
        self.commitments[provider] = Commitment(provider, job_id, value, event_id, now)

    def note_readable_answer(self, now: float) -> None:
        """A result anyone on the relay can read arrived: later commitments may be copies."""
        if self.first_reveal_at is None:
            self.first_reveal_at = now

    def due(self, now: float) -> bool:
        """Whether the window should close now."""
        if self.closed_at is not None:
            return False
        if self.first_reveal_at is not None:
            return True
        if self.quota is not None and len(self.commitments) >= self.quota:
            return True
        deadline = self.deadline
        return deadline is not None and now >= deadline

    def close(self, now: float) -> tuple[str, ...]:
        """Close (once); the providers whose commitments count, in arrival order."""
        if self.closed_at is None:
            self.closed_at = now
        return tuple(self.commitments)

    def check_reveal(self, provider: str, job_id: str, text: str, salt: str | None) -> None:
        """Raise :class:`JobRejected` unless ``text`` opens ``provider``'s commitment
        (``uncommitted``, ``reveal_mismatch``); a commitment opens once."""
        c = self.commitments.get(provider)
        if c is None:
            raise JobRejected("result without a commitment in the window", "uncommitted")
        if provider in self.spent:
            raise JobRejected("commitment already opened", "second_vote")
        self.spent.add(provider)
        if salt is None:
            raise JobRejected("reveal without a salt tag", "reveal_mismatch")
        if c.job_id != job_id or not verify_reveal(c.value, job_id, provider, text, salt):
            raise JobRejected("reveal does not match its commitment", "reveal_mismatch")


class CopyGuard:
    """One job's copy-resistance state on the customer side. The collector feeds it parsed
    feedback and results; it says how each counted result was protected, refuses the ones the
    policy does not count, and runs the commitment window."""

    def __init__(self, policy: CopyPolicy | None = None) -> None:
        self.policy = policy or CopyPolicy()
        p = self.policy
        self.window: CommitWindow | None = (
            CommitWindow(p.window_s, p.quota) if p.commit_reveal else None
        )
        self.gone: set[str] = set()  # committed providers that can no longer vote
        self._called = False

    @property
    def commit_reveal(self) -> bool:
        return self.window is not None

    def start(self, now: float) -> None:
        """The job is published: the commitment window opens."""
        if self.window is not None:
            self.window.open(now)

    def on_feedback(self, fb: JobFeedback, now: float) -> bool:
        """True when ``fb`` is a commitment that counts; raises :class:`JobRejected` for a
        malformed or late one. Other feedback passes (False)."""
        if fb.status == ERROR:
            self.gone.add(fb.provider)
        if self.window is None:
            return False
        value = commitment_of(fb.event)
        if value is None:
            return False
        self.window.offer(fb.provider, fb.job_id, value, fb.event.id, now)
        return True

    def on_result(self, res: JobResult, now: float) -> Protection:
        """The protection of a result that counts, or :class:`JobRejected` (``unsealed``,
        ``uncommitted``, ``reveal_mismatch``) for one that does not."""
        sealed = res.encrypted or res.sealed
        if self.window is not None:
            if not sealed:
                self.window.note_readable_answer(now)
        if not sealed and self.policy.sealing == "require":
            self.gone.add(res.provider)
            raise JobRejected("clear-text result where a sealed one is required", "unsealed")
        if self.window is not None:
            try:
                self.window.check_reveal(res.provider, res.job_id, res.content, salt_of(res.event))
            except JobRejected:
                self.gone.add(res.provider)
                raise
            return "committed"
        return "sealed" if sealed else "clear"

    def wake_at(self) -> float | None:
        """When the window must close by time (None: no timer needed)."""
        w = self.window
        if w is None or w.closed or self._called:
            return None
        return w.deadline

    def take_reveal_call(self, now: float) -> tuple[str, ...] | None:
        """Once the window is due: close it and return the providers to call (possibly none);
        None while it stays open, and after the call was taken."""
        w = self.window
        if w is None or self._called or not w.due(now):
            return None
        self._called = True
        return w.close(now)

    def hopeless(self, decision: Decision) -> bool:
        """After the window closed: can the committed providers still left reach k?"""
        w = self.window
        if w is None or not w.closed or decision.reached:
            return False
        voted = {v.provider for v in decision.votes}
        pending = [p for p in w.commitments if p not in voted and p not in self.gone]
        return decision.leading + len(pending) < decision.k


def protections(decision: Decision) -> Mapping[str, Protection]:
    """Each counted vote's protection, by provider."""
    return {v.provider: v.protection for v in decision.votes}


def copyable(decision: Decision, providers: Sequence[str] | None = None) -> tuple[str, ...]:
    """The providers (default: the agreeing ones) whose votes travelled in clear text and so
    could have been copied from another provider's result."""
    chosen = decision.agreeing if providers is None else providers
    prot = protections(decision)
    return tuple(p for p in chosen if prot.get(p) == "clear")


__all__ = [
    "SEALING_MODES",
    "CommitWindow",
    "Commitment",
    "CopyGuard",
    "CopyPolicy",
    "SealingMode",
    "copyable",
    "protections",
]
