"""What to do with one incoming job request: ignore it, refuse it with a reason the customer can act
on, or accept it with a model, a token budget and a quote. Pure: takes the event, the node's
policy and ``now``; returns a decision. Stateful checks (dedupe, rate limit, queue room) are the
node's, around this.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from client.dvm.nip90 import KIND_TEXT_GENERATION, JobRequest, parse_request
from client.dvm.sealing import COMMIT_SHA256, PARAM_COMMIT, PARAM_SEALED
from client.dvm.tokens import estimate_tokens
from client.nostr.errors import JobRejected
from client.nostr.event import Event
from client.nostr.keys import Keys

from .announce import PaymentPolicy
from .limits import Limits
from .pricing import Pricing, bid_refusal

# parse_request reasons that get silence, not feedback: not addressed to us, or nobody waits.
SILENT = frozenset(("not_for_us", "expired", "forged", "wrong_kind"))
SEAL_SCHEMES = frozenset(("nip44",))
COMMIT_SCHEMES = frozenset((COMMIT_SHA256,))
# Sampling parameters handed to the backend when the request sets them.
SAMPLING = ("temperature", "top_p", "top_k", "seed")


@dataclass(frozen=True, slots=True)
class Ignore:
    """Drop without a word (counted under ``reason``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer ``error`` feedback: ``message`` says why and what to change; ``amount_msats`` is our
    quote when the bid was too low."""

    request: JobRequest
    reason: str
    message: str
    amount_msats: int | None = None


@dataclass(frozen=True, slots=True)
class Accept:
    request: JobRequest
    model: str
    max_tokens: int
    prompt_tokens: int  # estimated, for the quote
    quote_msats: int
    params: dict[str, Any] = field(default_factory=dict)
    seal: str | None = None  # "nip44": encrypt the result to the customer
    commit: bool = False  # commit-reveal: publish a commitment, hold the result for the call


Decision = Ignore | Refuse | Accept


@dataclass(frozen=True, slots=True)
class ModelCatalog:
    """The models the node serves. Empty ``models`` with ``any_model`` accepts every name (a
    catch-all backend); a request without a model gets ``default``."""

    models: tuple[str, ...]
    default: str | None = None
    any_model: bool = False

    def resolve(self, requested: str | None) -> str | None:
        if requested is None or not requested.strip():
            return self.default or (self.models[0] if self.models else None)
        name = requested.strip()
        if name in self.models:
            return name
        # Ollama names carry a tag; "llama3" means "llama3:latest".
        if ":" not in name and f"{name}:latest" in self.models:
            return f"{name}:latest"
        return name if self.any_model else None


@dataclass(frozen=True, slots=True)
class IntakePolicy:
    keys: Keys
    limits: Limits
    pricing: Pricing
    payment: PaymentPolicy
    catalog: ModelCatalog
    not_before: int = 0  # jobs stamped earlier are stale (the node's start minus clock skew)
    kinds: Sequence[int] = (KIND_TEXT_GENERATION,)


def stub_request(event: Event) -> JobRequest:
    """A request we could not parse, as far as replying to it needs (id, customer, kind)."""
    targets = tuple(t[1] for t in event.tags if t[0] == "p" and len(t) > 1)
    return JobRequest(event, (), {}, None, (), None, targets, None, None)


def _refusal_text(exc: JobRejected, limits: Limits) -> str:
    if exc.reason == "decrypt":
        return (
            f"{exc}; encrypt the job's i/param tags to this node's public key with NIP-44 "
            "(or NIP-04) from the key that signs the request"
        )
    if exc.reason == "oversized":
        return f"{exc}; this node takes prompts of at most {limits.max_prompt_chars} characters"
    if exc.reason == "unsupported_input":
        return f"{exc}; send the prompt as an i tag of type text"
    return str(exc)


def screen(event: Event, policy: IntakePolicy, now: float) -> Decision:
    """Decide about one job request event (already verified by the relay pool)."""
    me = policy.keys.public_key
    if event.kind not in policy.kinds:
        return Ignore("wrong_kind")
    targets = [t[1] for t in event.tags if t[0] == "p" and len(t) > 1]
    if targets and me not in targets:
        return Ignore("not_for_us")
    if event.created_at < policy.not_before:
        return Ignore("stale")
    limits = policy.limits
    try:
        req = parse_request(
            event,
            keys=policy.keys,
            now=int(now),
            kinds=policy.kinds,
            verify=False,
            max_prompt_chars=limits.max_prompt_chars,
        )
    except JobRejected as exc:
        if exc.reason in SILENT:
            return Ignore(exc.reason)
        return Refuse(stub_request(event), exc.reason, _refusal_text(exc, limits))
    return evaluate(req, policy)


def sampling_params(req: JobRequest) -> dict[str, Any]:
    """The sampling parameters the request sets, for the backend."""
    params: dict[str, Any] = {}
    for name in SAMPLING:
        value = getattr(req, name)
        if value is not None:
            params[name] = value
    return params


def evaluate(req: JobRequest, policy: IntakePolicy, *, check_bid: bool = True) -> Refuse | Accept:
    """The checks after parsing: model, token cap, sealing, price against the bid."""
    limits = policy.limits
    model = policy.catalog.resolve(req.model)
    if model is None:
        served = ", ".join(policy.catalog.models) or "none"
        wanted = req.model or "(none given)"
        return Refuse(req, "unknown_model", f"model {wanted} is not served here; models: {served}")
    try:
        asked = req.max_tokens
    except JobRejected as exc:  # checked by parse_request already; kept for a clear reason
        return Refuse(req, exc.reason, str(exc))
    max_tokens = asked if asked is not None else limits.default_max_tokens
    if max_tokens > limits.max_tokens:
        return Refuse(
            req,
            "max_tokens",
            f"max_tokens {max_tokens} is above this node's cap of {limits.max_tokens}; "
            f"ask for at most {limits.max_tokens}",
        )
    seal = req.params.get(PARAM_SEALED)
    if seal is not None:
        seal = seal.strip().lower()
        if seal not in SEAL_SCHEMES:
            return Refuse(
                req, "sealed", f"sealed results use {', '.join(sorted(SEAL_SCHEMES))}, not {seal}"
            )
        if req.encryption is not None:
            seal = None  # an encrypted job's result is encrypted anyway
    commit = req.params.get(PARAM_COMMIT)
    if commit is not None and commit.strip().lower() not in COMMIT_SCHEMES:
        return Refuse(
            req,
            "commit",
            f"commitments use {', '.join(sorted(COMMIT_SCHEMES))}, not {commit.strip()[:16]}",
        )
    prompt_tokens = estimate_tokens(req.prompt)
    quote = 0
    if policy.payment != "free":
        quote = policy.pricing.quote(model, prompt_tokens, max_tokens)
    refusal = bid_refusal(req.bid_msats, quote, model, max_tokens) if check_bid else None
    if refusal is not None:
        return Refuse(req, "bid_too_low", refusal, amount_msats=quote)
    return Accept(
        req, model, max_tokens, prompt_tokens, quote, sampling_params(req), seal, commit is not None
    )
