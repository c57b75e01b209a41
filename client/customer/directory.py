"""The live provider directory: who sells kind-5050 completions right now, from their NIP-89
announcements (kind 31990, ``k`` 5050), which double as heartbeats (docs/provider-guide.md).

::

    directory = ProviderDirectory()                  # clock: time.time unless injected
    async with DirectoryWatcher(pool, directory):    # feeds it from the relays until closed
        for info in directory.alive(model="llama3.2:1b"):
            info.pubkey, info.models, info.price_for("llama3.2:1b"), info.payment, info.last_seen

    directory = await discover(pool)                 # or: one snapshot (stored events, EOSE)

The parsing and the directory are pure (events and a clock in, values out);
:class:`DirectoryWatcher` and :func:`discover` are the thin I/O layer over a
:class:`~client.net.pool.RelayPool`.

Rules (the customer side of ``provider.announce``, which this package must not import):

- A provider is its public key; only its newest announcement counts (on a ``created_at`` tie the
  lower event id wins, as relays do for addressable events). Older ones arriving later (another
  relay, a re-subscription) change nothing.
- **Alive** when the newest announcement says ``status`` ``online``, has a ``heartbeat`` interval
  and ``now - created_at <= 2 * heartbeat + 60`` (two missed beats plus slack), and its NIP-40
  ``expiration`` has not passed. A graceful stop publishes ``offline``: not alive at once.
- Announcements of other NIP-90 services (no ``nostrSwarm`` object, *foreign* DVMs such as
  nostrdvm's) are read leniently: models from ``nip90Params.model.values``, the price from
  ``amount`` (sats), ``supportsEncryption`` as NIP-44 and NIP-04. They have no ``heartbeat``
  tag; they are alive while their newest kind-11998 heartbeat (nostrdvm, aionostr-dvm: every
  ~300 s, with ``d`` and a NIP-40 ``expiration``) has not expired, or while their announcement
  itself is fresh (as old as two such beats plus slack). Otherwise: ``stale`` once a heartbeat
  was seen, ``unknown`` if none ever was. Selection ranks them below providers with a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal

from client.net.pool import RelayPool, Subscription
from client.nostr import nip19
from client.nostr.errors import InvalidAnnouncement
from client.nostr.event import Event
from client.nostr.filter import Filter

log = logging.getLogger("client.customer.directory")

KIND_HANDLER = 31990
KIND_HEARTBEAT = 11998  # nostrdvm's and aionostr-dvm's liveness beat; in no NIP
# Their beat interval: a foreign announcement this fresh counts as alive without a beat.
FOREIGN_BEAT_S = 300
# However far a heartbeat's expiration claims, it keeps a DVM alive at most this long.
MAX_BEAT_S = 3600
MAX_PENDING_BEATS = 10_000  # beats of keys without an announcement (yet) kept in memory
JOB_KIND = "5050"
SWARM_TOPIC = "nostr-swarm"
# Two missed heartbeats plus this much slack for clocks and relay delays (provider-guide.md).
ALIVE_SLACK_S = 60
MAX_CONTENT = 64 * 1024
MAX_MODELS = 256
# Providers silent (or offline) for this long are dropped from memory by prune().
FORGET_AFTER_S = 24 * 3600.0

Clock = Callable[[], float]
Payment = Literal["free", "after", "before", "unknown"]
Status = Literal["online", "offline", "stale", "expired", "unknown"]


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


# --- parsing (pure) ----------------------------------------------------------------------------


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
    common = {
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


def _foreign(content: dict[str, Any], common: dict[str, Any]) -> ProviderInfo:
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


# --- the directory (pure) ------------------------------------------------------------------


class ProviderDirectory:
    """Every provider heard of, by public key, from the newest announcement of each. ``clock``
    (seconds, UNIX time) decides who is alive; inject one in tests. ``swarm_only`` ignores
    providers that are not nostr-swarm nodes."""

    def __init__(self, *, clock: Clock = time.time, swarm_only: bool = False) -> None:
        self.clock = clock
        self.swarm_only = swarm_only
        self._by_key: dict[str, ProviderInfo] = {}
        self.version = 0  # goes up on every change (lets readers cache what they derive)
        self.rejected = 0  # announcements that did not parse
        self.superseded = 0  # older or equal announcements that arrived after a newer one
        self._listeners: list[Callable[[ProviderInfo], None]] = []
        self._beats: dict[str, Heartbeat] = {}  # newest kind-11998 beat per key, oldest first

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, pubkey: object) -> bool:
        return pubkey in self._by_key

    def get(self, pubkey: str) -> ProviderInfo | None:
        return self._by_key.get(pubkey)

    def on_change(self, listener: Callable[[ProviderInfo], None]) -> None:
        """Call ``listener(info)`` whenever a provider's entry is added or replaced."""
        self._listeners.append(listener)

    def offer(self, event: Event) -> ProviderInfo | None:
        """Take one announcement (or kind-11998 heartbeat); returns the new entry when it changed
        the directory, else None (not an announcement, not ours with ``swarm_only``, or not newer
        than what we have)."""
        try:
            if event.kind == KIND_HEARTBEAT:
                return self.beat(parse_heartbeat(event))
            info = parse_announcement(event, received_at=self.clock())
        except InvalidAnnouncement as exc:
            self.rejected += 1
            log.debug("announcement %s from %s ignored: %s", event.id[:12], event.pubkey[:12], exc)
            return None
        return self.add(info)

    def add(self, info: ProviderInfo) -> ProviderInfo | None:
        """Put ``info`` in unless what we have is newer (also for providers known otherwise, such
        as a simulator's)."""
        if self.swarm_only and not info.swarm:
            return None
        old = self._by_key.get(info.pubkey)
        beat = self._beats.get(info.pubkey)
        if beat is not None and (info.beat_at is None or beat.created_at > info.beat_at):
            info = replace(info, beat_at=beat.created_at, beat_until=beat.until)
        if old is not None:
            # Relays keep the lower id on a created_at tie; do the same.
            newer = info.created_at > old.created_at or (
                info.created_at == old.created_at and info.event_id < old.event_id
            )
            if not newer:
                self.superseded += 1
                return None
        self._store(info)
        return info

    def beat(self, beat: Heartbeat) -> ProviderInfo | None:
        """Take a heartbeat; returns the provider's entry when it changed (a beat for a key not
        announced yet is kept and applied when its announcement arrives)."""
        old = self._beats.get(beat.pubkey)
        if old is not None and old.created_at >= beat.created_at:
            return None
        self._beats.pop(beat.pubkey, None)
        self._beats[beat.pubkey] = beat
        if len(self._beats) > MAX_PENDING_BEATS:
            self._beats.pop(next(iter(self._beats)))
        info = self._by_key.get(beat.pubkey)
        if info is None:
            return None
        info = replace(info, beat_at=beat.created_at, beat_until=beat.until)
        self._store(info)
        return info

    def _store(self, info: ProviderInfo) -> None:
        self._by_key[info.pubkey] = info
        self.version += 1
        for listener in self._listeners:
            try:
                listener(info)
            except Exception:  # a listener bug must not stop discovery
                log.exception("directory listener failed")

    def remove(self, pubkey: str) -> bool:
        self.version += 1
        return self._by_key.pop(pubkey, None) is not None

    def all(self) -> list[ProviderInfo]:
        """Every known provider, newest heartbeat first."""
        return sorted(self._by_key.values(), key=lambda i: (-i.last_seen, i.pubkey))

    def alive(self, model: str | None = None, *, now: float | None = None) -> list[ProviderInfo]:
        """Providers alive now (and serving ``model`` when given), newest heartbeat first."""
        t = self.clock() if now is None else now
        return [i for i in self.all() if i.alive(t) and i.serves(model)]

    def alive_keys(self, model: str | None = None) -> list[str]:
        return [i.pubkey for i in self.alive(model)]

    def status(self, pubkey: str) -> Status | None:
        info = self._by_key.get(pubkey)
        return None if info is None else info.status(self.clock())

    def prune(self, *, forget_after_s: float = FORGET_AFTER_S) -> int:
        """Forget providers expired, or not alive for ``forget_after_s``; returns how many."""
        now = self.clock()
        gone = [
            pk
            for pk, i in self._by_key.items()
            if i.status(now) == "expired"
            or (not i.alive(now) and now - i.last_seen > forget_after_s)
        ]
        for pk in gone:
            del self._by_key[pk]
            self._beats.pop(pk, None)
        self.version += 1
        return len(gone)


# --- I/O: feeding the directory from relays --------------------------------------------------


def discovery_filter(
    *, swarm_only: bool = False, authors: Sequence[str] | None = None, since: int | None = None
) -> Filter:
    """``{"kinds": [31990], "#k": ["5050"]}`` (+ ``#t`` nostr-swarm, ``authors``, ``since``)."""
    tags: dict[str, list[str]] = {"k": [JOB_KIND]}
    if swarm_only:
        tags["t"] = [SWARM_TOPIC]
    return Filter(
        kinds=[KIND_HANDLER],
        tags=tags,
        authors=list(authors) if authors is not None else None,
        since=since,
    )


def heartbeat_filter(*, authors: Sequence[str] | None = None, since: int | None = None) -> Filter:
    """``{"kinds": [11998]}``: foreign DVMs' heartbeats (+ ``authors``, ``since``)."""
    return Filter(
        kinds=[KIND_HEARTBEAT], authors=list(authors) if authors is not None else None, since=since
    )


def directory_filters(
    *, swarm_only: bool = False, authors: Sequence[str] | None = None, now: float | None = None
) -> list[Filter]:
    """What a directory listens to: announcements, and (unless ``swarm_only``: ours send none)
    heartbeats young enough to still matter."""
    filters = [discovery_filter(swarm_only=swarm_only, authors=authors)]
    if not swarm_only:
        since = int(time.time() if now is None else now) - MAX_BEAT_S
        filters.append(heartbeat_filter(authors=authors, since=since))
    return filters


class DirectoryWatcher:
    """Keeps a :class:`ProviderDirectory` fed from a pool's relays: stored announcements first,
    then every new heartbeat, until closed. ``async with`` waits (up to ``ready_timeout``) for
    the relays' stored events before returning."""

    def __init__(
        self,
        pool: RelayPool,
        directory: ProviderDirectory,
        *,
        authors: Sequence[str] | None = None,
        ready_timeout: float = 5.0,
    ) -> None:
        self.pool = pool
        self.directory = directory
        self.authors = authors
        self.ready_timeout = ready_timeout
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.events = 0

    async def start(self) -> None:
        flt = directory_filters(
            swarm_only=self.directory.swarm_only, authors=self.authors, now=self.directory.clock()
        )
        self._sub = self.pool.subscribe(flt)
        self._task = asyncio.create_task(self._run(self._sub), name="provider directory")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._sub.wait_eose(), self.ready_timeout)

    async def _run(self, sub: Subscription) -> None:
        try:
            async for event in sub:
                self.events += 1
                if self.directory.offer(event) is not None:
                    async with self._changed:
                        self._changed.notify_all()
        except Exception as exc:  # every relay closed the subscription: say so, stop quietly
            log.warning("provider directory stopped: %s", exc)

    async def wait_for(self, predicate: Callable[[ProviderDirectory], bool]) -> None:
        """Until ``predicate(directory)`` holds (checked now and after every change); wrap in
        ``asyncio.wait_for`` for a deadline."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.directory))

    async def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> DirectoryWatcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def discover(
    pool: RelayPool,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - bounds waiting for slow relays' stored events
    swarm_only: bool = False,
    authors: Sequence[str] | None = None,
    clock: Clock = time.time,
) -> ProviderDirectory:
    """One snapshot: the relays' stored announcements (until every relay sent EOSE, at most
    ``timeout`` seconds) in a new directory."""
    directory = ProviderDirectory(clock=clock, swarm_only=swarm_only)
    flt = directory_filters(swarm_only=swarm_only, authors=authors, now=clock())
    async with pool.subscribe(flt) as sub:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sub.wait_eose(), timeout)
        while (event := sub.get_nowait()) is not None:
            directory.offer(event)
    return directory


def providers_from(infos: Iterable[ProviderInfo], *, clock: Clock = time.time) -> ProviderDirectory:
    """A directory holding ``infos`` (for simulations and tools that know providers already)."""
    directory = ProviderDirectory(clock=clock)
    for info in infos:
        directory.add(info)
    return directory
