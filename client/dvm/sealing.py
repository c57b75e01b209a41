"""Copy resistance for quorum jobs: sealed results and commit-reveal. Pure: values in, values out;
times are arguments (seconds on any monotonic clock), so tests drive the window by hand.

A quorum means something only if each provider did the work itself. On a public relay every
result is readable by everyone, so a provider that runs no model can wait for one honest result
and republish it under its own key. Two defences (wire: ``docs/wire-profile.md`` §8, reasoning:
``docs/security.md``):

- **Sealed results**: the request asks ``["param", "sealed", "nip44"]``; the provider encrypts the
  result content to the customer (NIP-44) and tags it ``["sealed", "nip44"]``. Nobody else can
  read it, so nobody can copy it. The customer's ``SealingMode`` says whether clear-text
  results still count (``prefer``: yes, marked copyable; ``require``: no).
- **Commit-reveal** (``["param", "commit", "sha256"]``): a provider first publishes kind-7000
  ``processing`` feedback with ``["commitment", <hex>]`` = :func:`commit` of its answer and a
  random salt, and holds the answer. The customer closes the commitment window with a
  :data:`KIND_REVEAL_CALL` event naming the providers whose commitments count; they then publish
  the result with ``["salt", <hex>]``. A reveal that does not match its commitment, and a
  commitment that arrives after the window closed or after any readable answer, do not count.

This module holds the wire forms both sides use: :func:`commit`, :func:`new_salt`,
:func:`build_commitment`, :func:`build_reveal_call`, :func:`parse_reveal_call`. The customer's
policy and per-job state are in :mod:`client.customer.copy_guard`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

from client.dvm.nip90 import (
    KIND_FEEDBACK,
    KIND_TEXT_GENERATION,
    PROCESSING,
    TAG_SALT,
    Job,
    JobRequest,
)
from client.nostr.errors import JobRejected
from client.nostr.event import Event, Tags, is_hex
from client.nostr.keys import Keys

# --- wire names (docs/wire-profile.md §8) ----------------------------------------------------

#: The customer's "commitment window closed, reveal now" event (regular, stored: a provider that
#: reconnects still finds it). Not a NIP-90 kind on purpose: DVM clients and providers ignore it.
KIND_REVEAL_CALL = 7001
PARAM_SEALED = "sealed"
PARAM_COMMIT = "commit"
COMMIT_SHA256 = "sha256"
TAG_COMMITMENT = "commitment"
#: Domain separation: a commitment of this profile cannot be mistaken for any other sha256.
COMMIT_DOMAIN = "nostr-swarm/commit/1"
SALT_BYTES = 32
COMMITTED_TEXT = "result committed; revealed when the customer closes the commitment window"


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


__all__ = [
    "COMMITTED_TEXT",
    "COMMIT_DOMAIN",
    "COMMIT_SHA256",
    "KIND_REVEAL_CALL",
    "PARAM_COMMIT",
    "PARAM_SEALED",
    "SALT_BYTES",
    "TAG_COMMITMENT",
    "TAG_SALT",
    "RevealCall",
    "build_commitment",
    "build_reveal_call",
    "commit",
    "commitment_of",
    "commitment_preimage",
    "new_salt",
    "parse_reveal_call",
    "salt_of",
    "verify_reveal",
]
