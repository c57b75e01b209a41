"""NIP-89 handler announcements (kind 31990) and DVM heartbeats (kind 11998): the one place
both are built and parsed. Pure: events and times in, values out.

A provider's announcement doubles as its heartbeat (docs/provider-guide.md, "Announcement and
heartbeat"): it is re-published every ``heartbeat_s`` seconds with a fresh ``created_at``, and
relays keep only the newest per (kind, pubkey, ``d``), so one query (``{"kinds":[31990],
"#k":["5050"]}``) gives a customer every provider's offer *and* when it was last alive. Tags, in
this order:

- ``["d", <id>]``, ``["k", "<kind>"]`` per job kind served, ``["t", "nostr-swarm"]``
- ``["heartbeat", "<seconds between re-publishes>"]``
- ``["status", "online" | "offline"]`` (``offline`` is published on graceful shutdown)
- ``["expiration", "<created_at + 3 * heartbeat>"]`` (NIP-40): relays drop the offer of a node
  that died without saying so.
- ``["model", <name>, "sha256:<hex of the weights file>", <engine>]`` per model whose weights the
  node knows: lets customers flag providers that claim the same weights and settings but answer
  differently (docs/wire-profile.md §10).

Liveness (:meth:`ProviderInfo.status`, :func:`is_alive`): alive when ``status`` is ``online``,
the NIP-40 ``expiration`` has not passed and ``now - created_at <= 2 * heartbeat + 60``.
Announcements of other DVM software (no ``nostrSwarm`` object: *foreign*) are read leniently and
kept alive by their kind-11998 heartbeats (nostrdvm, aionostr-dvm) or a fresh announcement.

Provider side: :class:`Announcement` (what to announce) -> :func:`build_announcement`. Customer
side: :func:`parse_announcement` -> :class:`ProviderInfo`, :func:`parse_heartbeat` ->
:class:`Heartbeat`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from client.dvm.nip90 import KIND_TEXT_GENERATION, WIRE_PROFILE
from client.nostr import nip19
from client.nostr.errors import InvalidAnnouncement
from client.nostr.event import Event, Tags
from client.nostr.keys import Keys

KIND_HANDLER = 31990
KIND_HEARTBEAT = 11998  # nostrdvm's and aionostr-dvm's liveness beat; in no NIP
JOB_KIND = str(KIND_TEXT_GENERATION)
SWARM_TOPIC = "nostr-swarm"
# An announcement expires (NIP-40) this many heartbeats after it was signed.
EXPIRY_HEARTBEATS = 3
# Two missed heartbeats plus this much slack for clocks and relay delays (provider-guide.md).
ALIVE_SLACK_S = 60
# Foreign DVMs' beat interval: a foreign announcement this fresh counts as alive without a beat.
FOREIGN_BEAT_S = 300
# However far a heartbeat's expiration claims, it keeps a DVM alive at most this long.
MAX_BEAT_S = 3600
MAX_CONTENT = 64 * 1024
MAX_MODELS = 256

Payment = Literal["free", "after", "before", "unknown"]
Status = Literal["online", "offline", "stale", "expired", "unknown"]


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceList:
    """Millisats per 1,000 prompt and completion tokens, and the least a job costs."""

    msats_per_1k_prompt: int = 0
    msats_per_1k_completion: int = 0
    min_msats: int = 0

    @property
    def is_free(self) -> bool:
        return self.msats_per_1k_prompt == self.msats_per_1k_completion == self.min_msats == 0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Millisats for these token counts, rounded up, never below the minimum (the provider's
        own formula, so a quote computed here matches the one it sends)."""
        milli = (
            max(0, prompt_tokens) * self.msats_per_1k_prompt
            + max(0, completion_tokens) * self.msats_per_1k_completion
        )
        return max(self.min_msats, -(-milli // 1000))

    def to_dict(self) -> dict[str, int]:
        return {
            "msats_per_1k_prompt": self.msats_per_1k_prompt,
            "msats_per_1k_completion": self.msats_per_1k_completion,
            "min_msats": self.min_msats,
        }


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What one provider's newest announcement says. ``created_at`` is when it was signed (its
    last heartbeat: the provider's *last seen*); ``received_at`` is our clock when it arrived."""

    pubkey: str
    created_at: int
    event_id: str = ""
    d_tag: str = ""
    name: str = ""
    about: str = ""
    models: tuple[str, ...] = ()
    default_model: str | None = None
    payment: Payment = "unknown"
    price: PriceList | None = None  # None: the announcement names no price
    model_prices: Mapping[str, PriceList] = field(default_factory=dict)
    encryption: tuple[str, ...] = ()
    sealed_results: tuple[str, ...] = ()
    commit_reveal: tuple[str, ...] = ()  # commit-reveal schemes it honours (e.g. "sha256")
    max_tokens: int | None = None
    max_prompt_chars: int | None = None
    heartbeat_s: int | None = None
    online: bool = True
    expiration: int | None = None
    swarm: bool = False  # a nostr-swarm provider (``t`` tag and ``nostrSwarm`` content)
    profile: str = ""
    lud16: str = ""
    received_at: float = 0.0
    foreign: bool = False  # announced without a nostrSwarm object: another DVM software's
    beat_at: int | None = None  # newest kind-11998 heartbeat: when signed
    beat_until: int | None = None  # and until when it keeps the DVM alive
    # ["model", name, "sha256:<hex>", engine] tags: the weights each model runs on (#19)
    model_weights: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def npub(self) -> str:
        return npub_of(self.pubkey)

    @property
    def last_seen(self) -> int:
        """The newest sign of life: the announcement or a heartbeat."""
        return max(self.created_at, self.beat_at or 0)

    @property
    def is_free(self) -> bool:
        return self.payment == "free" or (self.price is not None and self.price.is_free)

    def serves(self, model: str | None) -> bool:
        """True when ``model`` is listed (``llama3`` matches ``llama3:latest``), when no model is
        asked for, or when the provider lists none (it decides per job)."""
        if model is None or not self.models:
            return True
        return any(m == model or m == f"{model}:latest" for m in self.models)

    def price_for(self, model: str | None = None) -> PriceList | None:
        if model is not None and model in self.model_prices:
            return self.model_prices[model]
        return self.price

    def quote_msats(self, model: str | None, prompt_tokens: int, max_tokens: int) -> int | None:
        """The most a job could cost here (the provider's quote), or None when unknown."""
        if self.is_free:
            return 0
        price = self.price_for(model)
        return None if price is None else price.cost(prompt_tokens, max_tokens)

    def supports_encryption(self, scheme: str = "nip44") -> bool:
        return scheme in self.encryption

    def status(self, now: float) -> Status:
        """``online``, ``offline`` (said so), ``stale`` (missed its heartbeats), ``expired``
        (NIP-40), or ``unknown`` (no heartbeat tag, no kind-11998 beat, an old announcement)."""
        if self.expiration is not None and now >= self.expiration:
            return "expired"
        if not self.online:
            return "offline"
        if not self.heartbeat_s:
            if self.beat_until is not None and now < self.beat_until:
                return "online"
            if now - self.created_at <= 2 * FOREIGN_BEAT_S + ALIVE_SLACK_S:
                return "online"  # a fresh announcement is a sign of life too
            return "stale" if self.beat_until is not None else "unknown"
        if now - self.created_at > 2 * self.heartbeat_s + ALIVE_SLACK_S:
            return "stale"
        return "online"

    def alive(self, now: float) -> bool:
        return self.status(now) == "online"

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pubkey": self.pubkey,
            "npub": self.npub,
            "name": self.name,
            "about": self.about,
            "models": list(self.models),
            "default_model": self.default_model,
            "payment": self.payment,
            "price": self.price.to_dict() if self.price is not None else None,
            "model_prices": {m: p.to_dict() for m, p in sorted(self.model_prices.items())},
            "encryption": list(self.encryption),
            "sealed_results": list(self.sealed_results),
            "commit_reveal": list(self.commit_reveal),
            "max_tokens": self.max_tokens,
            "max_prompt_chars": self.max_prompt_chars,
            "heartbeat_s": self.heartbeat_s,
            "last_seen": self.last_seen,
            "last_heartbeat": self.beat_at,
            "expiration": self.expiration,
            "swarm": self.swarm,
            "foreign": self.foreign,
            "profile": self.profile,
            "event_id": self.event_id,
        }
        if now is not None:
            out["status"] = self.status(now)
            out["alive"] = self.alive(now)
        return out


def npub_of(pubkey: str) -> str:
    """``npub1…`` for a hex key; anything else (simulated keys) as it is."""
    try:
        return nip19.encode("npub", bytes.fromhex(pubkey))
    except Exception:
        return pubkey


# --- building (provider side) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a provider announces. ``price`` is its default price list, ``model_prices`` the
    per-model ones; ``payment`` how it is paid."""

    models: Sequence[str]
    price: PriceList
    payment: Literal["free", "after", "before"]
    max_tokens: int
    max_prompt_chars: int
    heartbeat_s: int
    model_prices: Mapping[str, PriceList] = field(default_factory=dict)
    name: str = ""
    about: str = ""
    picture: str = ""
    lud16: str = ""
    default_model: str | None = None
    encryption: Sequence[str] = ("nip44", "nip04")
    sealed: Sequence[str] = ("nip44",)
    commit: Sequence[str] = ("sha256",)  # commit-reveal schemes honoured
    d_tag: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    weights: Sequence[tuple[str, str, str]] = ()  # (model, "sha256:<hex>", engine)
    kinds: Sequence[int] = (KIND_TEXT_GENERATION,)  # NIP-90 kinds served: one `k` tag each

    @property
    def is_free(self) -> bool:
        return self.payment == "free" or (
            self.price.is_free and all(p.is_free for p in self.model_prices.values())
        )


def default_d_tag(pubkey: str) -> str:
    """A stable ``d`` for this key, so every restart replaces the same announcement."""
    return hashlib.sha256(f"nostr-swarm/provider/{pubkey}".encode()).hexdigest()[:16]


def _price_json(price: PriceList) -> dict[str, int]:
    return {
        "msatsPer1kPrompt": price.msats_per_1k_prompt,
        "msatsPer1kCompletion": price.msats_per_1k_completion,
        "minMsats": price.min_msats,
    }


def announcement_content(a: Announcement) -> dict[str, Any]:
    """The kind-31990 content: the keys DVM clients read plus ours under ``nostrSwarm``."""
    free = a.is_free
    pricing: dict[str, Any] = _price_json(a.price)
    if a.model_prices:
        pricing["models"] = {m: _price_json(p) for m, p in sorted(a.model_prices.items())}
    content: dict[str, Any] = {
        "name": a.name or "nostr-swarm provider",
        "about": a.about or f"LLM text generation (kind 5050): {', '.join(a.models)}",
        # nostrdvm's unit for `amount` is sats; ours is the least a job costs.
        "amount": "free" if free else str(-(-a.price.min_msats // 1000)),
        "supportsEncryption": bool(a.encryption),
        "encryptionSupported": bool(a.encryption),
        "acceptsNutZaps": False,
        "personalized": False,
        "nip90Params": {
            "model": {
                "required": False,
                "values": list(a.models),
                "description": "the model to run"
                + (f" (default {a.default_model})" if a.default_model else ""),
            },
            "max_tokens": {
                "required": False,
                "values": [],
                "description": f"completion tokens, at most {a.max_tokens}",
            },
            "temperature": {"required": False, "values": [], "description": "0.0 to 2.0"},
            "sealed": {
                "required": False,
                "values": list(a.sealed),
                "description": "encrypt the result to the customer",
            },
            "commit": {
                "required": False,
                "values": list(a.commit),
                "description": "commit-reveal: commit to the answer, reveal when called",
            },
        },
        "nostrSwarm": {
            "profile": WIRE_PROFILE,
            "models": list(a.models),
            "defaultModel": a.default_model,
            "payment": "free" if free else a.payment,
            "pricing": pricing,
            "encryption": list(a.encryption),
            "sealedResults": list(a.sealed),
            "commitReveal": list(a.commit),
            "maxTokens": a.max_tokens,
            "maxPromptChars": a.max_prompt_chars,
            "heartbeat": a.heartbeat_s,
            **a.extra,
        },
    }
    if a.picture:
        content["picture"] = a.picture
    if a.lud16:
        content["lud16"] = a.lud16
    return content


def build_announcement(
    keys: Keys, a: Announcement, *, created_at: int, online: bool = True
) -> Event:
    """The signed kind-31990 announcement/heartbeat."""
    if a.heartbeat_s < 1:
        raise InvalidAnnouncement("heartbeat_s must be at least 1")
    tags: Tags = [
        ["d", a.d_tag or default_d_tag(keys.public_key)],
        *(["k", str(k)] for k in a.kinds),
        ["t", SWARM_TOPIC],
        ["heartbeat", str(a.heartbeat_s)],
        ["status", "online" if online else "offline"],
        ["expiration", str(created_at + EXPIRY_HEARTBEATS * a.heartbeat_s)],
        *(["model", name, digest, engine] for name, digest, engine in a.weights),
    ]
    content = json.dumps(announcement_content(a), separators=(",", ":"), sort_keys=True)
    return Event.create(keys, KIND_HANDLER, content, tags, created_at=created_at)


def is_alive(event: Event, now: float) -> bool:
    """The customer's rule for a nostr-swarm heartbeat: an announcement with a ``heartbeat``
    tag whose provider is ``online`` at ``now`` (:meth:`ProviderInfo.status`)."""
    try:
        info = parse_announcement(event)
    except InvalidAnnouncement:
        return False
    return info.heartbeat_s is not None and info.alive(now)


# --- parsing (customer side) --------------------------------------------------------------


def _int(value: object, what: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidAnnouncement(f"{what} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidAnnouncement(f"{what} must be finite")
    try:
        number = int(value)
    except ValueError as exc:
        raise InvalidAnnouncement(f"{what} must be a whole number, not {value!r:.20}") from exc
    if number < minimum:
        raise InvalidAnnouncement(f"{what} must be at least {minimum}")
    return number


def _opt_int(value: object, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _strings(value: object, what: str, limit: int = MAX_MODELS) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidAnnouncement(f"{what} must be a list of strings")
    return tuple(dict.fromkeys(v for v in value[:limit] if v))


def _text(value: object, limit: int = 1000) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _price(obj: object, what: str) -> PriceList:
    if not isinstance(obj, dict):
        raise InvalidAnnouncement(f"{what} must be an object")
    return PriceList(
        _int(obj.get("msatsPer1kPrompt", 0), f"{what}.msatsPer1kPrompt"),
        _int(obj.get("msatsPer1kCompletion", 0), f"{what}.msatsPer1kCompletion"),
        _int(obj.get("minMsats", 0), f"{what}.minMsats"),
    )


def _tag_int(event: Event, name: str) -> int | None:
    value = event.tag_value(name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise InvalidAnnouncement(f"tag {name!r} must be a whole number, not {value[:20]!r}")
    return int(value)


_WEIGHTS_HEX = frozenset("0123456789abcdef")


def model_weights(event: Event) -> dict[str, tuple[str, str]]:
    """``["model", <name>, "sha256:<64 hex>", <engine>?]`` tags -> ``{name: (weights, engine)}``
    (docs/wire-profile.md §10); malformed tags are ignored, the first tag per model wins."""
    out: dict[str, tuple[str, str]] = {}
    for t in event.tags:
        if len(t) < 3 or t[0] != "model" or not t[1] or t[1] in out or len(out) >= MAX_MODELS:
            continue
        algo, _, digest = t[2].partition(":")
        if algo != "sha256" or len(digest) != 64 or not set(digest) <= _WEIGHTS_HEX:
            continue
        out[t[1][:200]] = (t[2], t[3][:100] if len(t) > 3 else "")
    return out


class _Common(TypedDict):
    """The fields every announcement fills the same way, ours or another DVM software's."""

    pubkey: str
    created_at: int
    event_id: str
    d_tag: str
    name: str
    about: str
    lud16: str
    heartbeat_s: int | None
    online: bool
    expiration: int | None
    received_at: float
    model_weights: Mapping[str, tuple[str, str]]


def parse_announcement(event: Event, *, received_at: float = 0.0) -> ProviderInfo:
    """The provider an announcement describes. Raises :class:`InvalidAnnouncement` for anything
    that is not a kind-5050 handler announcement (the signature is the caller's business: the pool
    verifies every event it hands on)."""
    if event.kind != KIND_HANDLER:
        raise InvalidAnnouncement(f"kind {event.kind} is not a handler announcement (31990)")
    if not any(len(t) > 1 and t[0] == "k" and t[1] == JOB_KIND for t in event.tags):
        raise InvalidAnnouncement("no ['k', '5050'] tag: not a text-generation provider")
    if len(event.content) > MAX_CONTENT:
        raise InvalidAnnouncement(f"content longer than {MAX_CONTENT} characters")
    content: Any = {}
    if event.content.strip():
        try:
            content = json.loads(event.content)
        except (ValueError, RecursionError) as exc:
            raise InvalidAnnouncement(f"content is not JSON: {exc}") from exc
    if not isinstance(content, dict):
        raise InvalidAnnouncement("content must be a JSON object")
    ours = content.get("nostrSwarm")
    if ours is not None and not isinstance(ours, dict):
        raise InvalidAnnouncement("nostrSwarm must be an object")
    status = (event.tag_value("status") or "online").strip().lower()
    heartbeat = _tag_int(event, "heartbeat")
    common: _Common = {
        "pubkey": event.pubkey,
        "created_at": event.created_at,
        "event_id": event.id,
        "d_tag": event.d_tag(),
        "name": _text(content.get("name"), 200),
        "about": _text(content.get("about")),
        "lud16": _text(content.get("lud16"), 200),
        "heartbeat_s": heartbeat if heartbeat else None,
        "online": status != "offline",
        "expiration": _tag_int(event, "expiration"),
        "received_at": received_at,
        "model_weights": model_weights(event),
    }
    topics = {t[1] for t in event.tags if len(t) > 1 and t[0] == "t"}
    if ours is None:
        return _foreign(content, common)
    payment = ours.get("payment", "unknown")
    if payment not in ("free", "after", "before"):
        payment = "unknown"
    pricing = ours.get("pricing")
    price: PriceList | None = None
    model_prices: dict[str, PriceList] = {}
    if pricing is not None:
        price = _price(pricing, "pricing")
        per_model = pricing.get("models") or {}
        if not isinstance(per_model, dict):
            raise InvalidAnnouncement("pricing.models must be an object")
        for name, p in list(per_model.items())[:MAX_MODELS]:
            model_prices[str(name)] = _price(p, f"pricing.models[{name!r}]")
    if payment == "free":
        price = PriceList()
    default_model = ours.get("defaultModel")
    heartbeat_content = ours.get("heartbeat")
    if common["heartbeat_s"] is None and heartbeat_content is not None:
        common["heartbeat_s"] = _int(heartbeat_content, "nostrSwarm.heartbeat") or None
    return ProviderInfo(
        models=_strings(ours.get("models"), "nostrSwarm.models"),
        default_model=default_model if isinstance(default_model, str) else None,
        payment=payment,
        price=price,
        model_prices=model_prices,
        encryption=_strings(ours.get("encryption"), "nostrSwarm.encryption", 8),
        sealed_results=_strings(ours.get("sealedResults"), "nostrSwarm.sealedResults", 8),
        commit_reveal=_strings(ours.get("commitReveal"), "nostrSwarm.commitReveal", 8),
        max_tokens=_opt_int(ours.get("maxTokens"), "nostrSwarm.maxTokens"),
        max_prompt_chars=_opt_int(ours.get("maxPromptChars"), "nostrSwarm.maxPromptChars"),
        swarm=SWARM_TOPIC in topics,
        profile=_text(ours.get("profile"), 100),
        **common,
    )


def _foreign(content: dict[str, Any], common: _Common) -> ProviderInfo:
    """A DVM that is not ours: the keys NIP-89/DVM clients read, leniently."""
    models: tuple[str, ...] = ()
    params = content.get("nip90Params")
    if isinstance(params, dict) and isinstance(params.get("model"), dict):
        with contextlib.suppress(InvalidAnnouncement):
            models = _strings(params["model"].get("values"), "nip90Params.model.values")
    amount = content.get("amount")
    payment: Payment = "unknown"
    price: PriceList | None = None
    if isinstance(amount, str) and amount.strip().lower() == "free":
        payment, price = "free", PriceList()
    else:
        with contextlib.suppress(InvalidAnnouncement):
            sats = _int(amount, "amount") if amount is not None else None
            if sats is not None:
                price = PriceList(min_msats=sats * 1000)
    encrypted = content.get("supportsEncryption") is True or content.get("encryptionSupported")
    return ProviderInfo(
        models=models,
        payment=payment,
        price=price,
        # nostrdvm and NDK seal with NIP-44 by default and read NIP-04 too.
        encryption=("nip44", "nip04") if encrypted is True else (),
        foreign=True,
        **common,
    )


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A kind-11998 heartbeat: ``pubkey`` is alive from ``created_at`` until ``until``."""

    pubkey: str
    created_at: int
    until: int
    d_tag: str = ""


def parse_heartbeat(event: Event) -> Heartbeat:
    """nostrdvm's heartbeat: kind 11998, ``d`` (its announcement's), NIP-40 ``expiration``.
    Without an expiration it lasts two beats plus slack; never more than ``MAX_BEAT_S``."""
    if event.kind != KIND_HEARTBEAT:
        raise InvalidAnnouncement(f"kind {event.kind} is not a heartbeat ({KIND_HEARTBEAT})")
    expiration = _tag_int(event, "expiration")
    until = event.created_at + 2 * FOREIGN_BEAT_S + ALIVE_SLACK_S
    if expiration is not None:
        until = expiration
    return Heartbeat(
        event.pubkey, event.created_at, min(until, event.created_at + MAX_BEAT_S), event.d_tag()
    )


__all__ = [
    "ALIVE_SLACK_S",
    "EXPIRY_HEARTBEATS",
    "FOREIGN_BEAT_S",
    "JOB_KIND",
    "KIND_HANDLER",
    "KIND_HEARTBEAT",
    "MAX_BEAT_S",
    "SWARM_TOPIC",
    "Announcement",
    "Heartbeat",
    "Payment",
    "PriceList",
    "ProviderInfo",
    "Status",
    "announcement_content",
    "build_announcement",
    "default_d_tag",
    "is_alive",
    "model_weights",
    "npub_of",
    "parse_announcement",
    "parse_heartbeat",
]
