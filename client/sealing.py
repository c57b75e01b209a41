"""Copy resistance for quorum jobs: sealed results and commit-reveal. Pure: values in, values out;
times are arguments (seconds on any monotonic clock), so tests drive the window by hand.

A quorum means something only if each provider did the work itself. On a public relay every
result is readable by everyone, so a provider that runs no model can wait for one honest result
and republish it under its own key. Two defences (wire: ``docs/wire-profile.md`` §8, reasoning:
``docs/security.md``):

- **Sealed results**: the request asks ``["param", "sealed", "nip44"]``; the provider encrypts the
  result content to the customer (NIP-44) and tags it ``["sealed", "nip44"]``. Nobody else can
  read it, so nobody can copy it. The customer's :data:`SealingMode` says whether clear-text
  results still count (``prefer``: yes, marked copyable; ``require``: no).
- **Commit-reveal** (``["param", "commit", "sha256"]``): a provider first publishes kind-7000
  ``processing`` feedback with ``["commitment", <hex>]`` = :func:`commit` of its answer and a
  random salt, and holds the answer. The customer closes the commitment window with a
  :data:`KIND_REVEAL_CALL` event naming the providers whose commitments count; they then publish
  the result with ``["salt", <hex>]``. A reveal that does not match its commitment, and a
  commitment that arrives after the window closed or after any readable answer, do not count.

Customer side: :class:`CopyPolicy` (what the customer asks and accepts) and :class:`CopyGuard`
(one job's state: commitments, the window, each result's :data:`~client.quorum.Protection`).
Provider side: :func:`commit`, :func:`new_salt`, :func:`build_commitment`,
:func:`parse_reveal_call`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .errors import JobRejected
from .event import Event, Tags, is_hex
from .keys import Keys
from .nip90 import (
    ERROR,
    KIND_FEEDBACK,
    KIND_TEXT_GENERATION,
    PROCESSING,
    SEAL_NIP44,
    TAG_SEALED,
    Job,
    JobFeedback,
    JobRequest,
    JobResult,
)
from .quorum import Decision, Protection

# --- wire names (docs/wire-profile.md §8) ----------------------------------------------------

#: The customer's "commitment window closed, reveal now" event (regular, stored: a provider that
#: reconnects still finds it). Not a NIP-90 kind on purpose: DVM clients and providers ignore it.
KIND_REVEAL_CALL = 7001
PARAM_SEALED = "sealed"
PARAM_COMMIT = "commit"
COMMIT_SHA256 = "sha256"
TAG_COMMITMENT = "commitment"
TAG_SALT = "salt"
#: Domain separation: a commitment of this profile cannot be mistaken for any other sha256.
COMMIT_DOMAIN = "nostr-swarm/commit/1"
SALT_BYTES = 32
COMMITTED_TEXT = "result committed; revealed when the customer closes the commitment window"

SealingMode = Literal["off", "prefer", "require"]
SEALING_MODES: tuple[SealingMode, ...] = ("off", "prefer", "require")


# --- commitments -----------------------------------------------------------------------------


def new_salt() -> str:
    """32 random bytes, hex: the answer cannot be guessed from its commitment."""
    return os.urandom(SALT_BYTES).hex()


def commitment_preimage(job_id: str, provider: str, text: str, salt: str) -> bytes:
    """The canonical encoding: the JSON array ``[COMMIT_DOMAIN, job id, provider, text, salt]``
    serialized as NIP-01 serializes events (no whitespace, UTF-8, non-ASCII verbatim). JSON
    quoting keeps the fields apart (``("ab", "c")`` and ``("a", "bc")`` differ)."""
    return json.dumps(
        [COMMIT_DOMAIN, job_id, provider, text, salt], separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def commit(job_id: str, provider: str, text: str, salt: str) -> str:
    """sha256 (hex) of :func:`commitment_preimage`. Binding the job id and the provider's key
    means a commitment cannot be replayed for another job or claimed by another key."""
    return hashlib.sha256(commitment_preimage(job_id, provider, text, salt)).hexdigest()


def verify_reveal(commitment: str, job_id: str, provider: str, text: str, salt: str) -> bool:
    return hmac.compare_digest(commit(job_id, provider, text, salt), commitment)


def _single_hex(event: Event, name: str) -> str | None:
    tags = event.tags_named(name)
    if not tags:
        return None
    if len(tags) > 1 or len(tags[0]) < 2 or not is_hex(tags[0][1], 64):
        raise JobRejected(f"{name} tag must be one 64-hex value", "malformed")
    return tags[0][1]


def commitment_of(event: Event) -> str | None:
    """The ``["commitment", <64 hex>]`` of a feedback event; None without one."""
    return _single_hex(event, TAG_COMMITMENT)


def salt_of(event: Event) -> str | None:
    """The ``["salt", <64 hex>]`` of a revealed result; None without one."""
    return _single_hex(event, TAG_SALT)


# --- events ----------------------------------------------------------------------------------


def build_commitment(
    keys: Keys, request: JobRequest, commitment: str, *, created_at: int | None = None
) -> Event:
    """The provider's kind-7000 ``processing`` feedback carrying ``["commitment", <hex>]``."""
    if not is_hex(commitment, 64):
        raise JobRejected("commitment must be 64 hex characters", "malformed")
    tags: Tags = [
        ["status", PROCESSING, COMMITTED_TEXT],
        ["e", request.id],
        ["p", request.customer],
        [TAG_COMMITMENT, commitment],
    ]
    if request.encryption is not None:
        tags.append(["encrypted"])
    return Event.create(keys, KIND_FEEDBACK, "", tags, created_at=created_at)


def build_reveal_call(
    keys: Keys,
    job: Job,
    providers: Iterable[str],
    *,
    reason: str = "commitment window closed",
    created_at: int | None = None,
) -> Event:
    """The customer's reveal call: ``["e", <request id>]`` per request, ``["k", "<kind>"]``, and
    ``["p", <provider>]`` per commitment that counts. Only those providers should reveal."""
    tags: Tags = [["e", i] for i in job.ids]
    tags.append(["k", str(job.kind)])
    tags.extend(["p", p] for p in dict.fromkeys(providers))
    return Event.create(keys, KIND_REVEAL_CALL, reason, tags, created_at=created_at)


@dataclass(frozen=True, slots=True)
class RevealCall:
    event: Event
    request_ids: tuple[str, ...]
    providers: frozenset[str]
    kind: int

    @property
    def customer(self) -> str:
        return self.event.pubkey

    def names(self, provider: str) -> bool:
        return provider in self.providers


def parse_reveal_call(event: Event) -> RevealCall:
    """A reveal call as a provider reads it (signature checked by the caller's pool). Strict:
    kind, at least one ``e``, hex ``e``/``p`` values, a numeric ``k``."""
    if event.kind != KIND_REVEAL_CALL:
        raise JobRejected(f"kind {event.kind} is not a reveal call", "wrong_kind")
    ids = tuple(t[1] for t in event.tags if t[0] == "e" and len(t) > 1)
    providers = frozenset(t[1] for t in event.tags if t[0] == "p" and len(t) > 1)
    if not ids or not all(is_hex(i, 64) for i in ids):
        raise JobRejected("a reveal call names its job with e tags", "malformed")
    if not all(is_hex(p, 64) for p in providers):
        raise JobRejected("reveal call p tags must be 64-hex keys", "malformed")
    k = event.tag_value("k") or str(KIND_TEXT_GENERATION)
    if not k.isascii() or not k.isdigit():
        raise JobRejected("reveal call k tag must be a kind number", "malformed")
    return RevealCall(event, ids, providers, int(k))


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
    "COMMIT_DOMAIN",
    "COMMIT_SHA256",
    "KIND_REVEAL_CALL",
    "PARAM_COMMIT",
    "PARAM_SEALED",
    "SEALING_MODES",
    "SEAL_NIP44",
    "TAG_COMMITMENT",
    "TAG_SALT",
    "TAG_SEALED",
    "CommitWindow",
    "Commitment",
    "CopyGuard",
    "CopyPolicy",
    "RevealCall",
    "SealingMode",
    "build_commitment",
    "build_reveal_call",
    "commit",
    "commitment_of",
    "commitment_preimage",
    "copyable",
    "new_salt",
    "parse_reveal_call",
    "protections",
    "salt_of",
    "verify_reveal",
]
