"""The node's NIP-89 handler announcement (kind 31990, ``k`` 5050), which doubles as its heartbeat.
Pure: builds events from values.

Heartbeat (see docs/provider-guide.md, "Heartbeat"): the node re-publishes the same addressable
announcement every ``heartbeat_s`` seconds with a fresh ``created_at``. Relays keep only the newest
per (kind, pubkey, ``d``), so one query (``{"kinds":[31990], "#k":["5050"]}``) gives a customer
every provider's offer *and* when it was last alive, with nothing piling up on relays. Tags:

- ``["d", <id>]``, ``["k", "5050"]``, ``["t", "nostr-swarm"]``
- ``["heartbeat", "<seconds between re-publishes>"]``
- ``["status", "online" | "offline"]`` (``offline`` is published on graceful shutdown)
- ``["expiration", "<created_at + 3 * heartbeat>"]`` (NIP-40): relays drop the offer of a node
  that died without saying so.
- ``["model", <name>, "sha256:<hex of the weights file>", <engine>]`` per model whose weights the
  node knows (``Offer.weights``): lets customers flag providers that claim the same weights and
  settings but answer differently (docs/wire-profile.md §10).

A provider is alive when ``status`` is ``online`` and ``now - created_at <= 2 * heartbeat + 60``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from client.dvm.nip90 import KIND_TEXT_GENERATION, WIRE_PROFILE
from client.nostr.event import Event
from client.nostr.keys import Keys

from .pricing import Pricing

KIND_HANDLER = 31990
SWARM_TOPIC = "nostr-swarm"
EXPIRY_HEARTBEATS = 3
# A customer's allowance for clocks and relay delays on top of two missed heartbeats.
ALIVE_SLACK_S = 60

PaymentPolicy = Literal["free", "after", "before"]


def default_d_tag(pubkey: str) -> str:
    """A stable ``d`` for this key, so every restart replaces the same announcement."""
    return hashlib.sha256(f"nostr-swarm/provider/{pubkey}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Offer:
    """What the node announces."""

    models: Sequence[str]
    pricing: Pricing
    payment: PaymentPolicy
    max_tokens: int
    max_prompt_chars: int
    heartbeat_s: int
    name: str = ""
    about: str = ""
    picture: str = ""
    lud16: str = ""
    default_model: str | None = None
    encryption: Sequence[str] = ("nip44", "nip04")
    sealed: Sequence[str] = ("nip44",)
    commit: Sequence[str] = ("sha256",)  # commit-reveal schemes the node honours
    d_tag: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    weights: Sequence[tuple[str, str, str]] = ()  # (model, "sha256:<hex>", engine)
    kinds: Sequence[int] = (KIND_TEXT_GENERATION,)  # NIP-90 kinds served: one `k` tag each


def _price_dict(pricing: Pricing) -> dict[str, Any]:
    out: dict[str, Any] = {
        "msatsPer1kPrompt": pricing.msats_per_1k_prompt,
        "msatsPer1kCompletion": pricing.msats_per_1k_completion,
        "minMsats": pricing.min_msats,
    }
    if pricing.models:
        out["models"] = {
            m: {
                "msatsPer1kPrompt": p.msats_per_1k_prompt,
                "msatsPer1kCompletion": p.msats_per_1k_completion,
                "minMsats": p.min_msats,
            }
            for m, p in sorted(pricing.models.items())
        }
    return out


def offer_content(offer: Offer) -> dict[str, Any]:
    """The kind-31990 content: the keys DVM clients read (protocol.md §7) plus ours under
    ``nostrSwarm``."""
    free = offer.payment == "free" or offer.pricing.is_free
    content: dict[str, Any] = {
        "name": offer.name or "nostr-swarm provider",
        "about": offer.about or f"LLM text generation (kind 5050): {', '.join(offer.models)}",
        # nostrdvm's unit for `amount` is sats; ours is the least a job costs.
        "amount": "free" if free else str(-(-offer.pricing.min_msats // 1000)),
        "supportsEncryption": bool(offer.encryption),
        "encryptionSupported": bool(offer.encryption),
        "acceptsNutZaps": False,
        "personalized": False,
        "nip90Params": {
            "model": {
                "required": False,
                "values": list(offer.models),
                "description": "the model to run"
                + (f" (default {offer.default_model})" if offer.default_model else ""),
            },
            "max_tokens": {
                "required": False,
                "values": [],
                "description": f"completion tokens, at most {offer.max_tokens}",
            },
            "temperature": {"required": False, "values": [], "description": "0.0 to 2.0"},
            "sealed": {
                "required": False,
                "values": list(offer.sealed),
                "description": "encrypt the result to the customer",
            },
            "commit": {
                "required": False,
                "values": list(offer.commit),
                "description": "commit-reveal: commit to the answer, reveal when called",
            },
        },
        "nostrSwarm": {
            "profile": WIRE_PROFILE,
            "models": list(offer.models),
            "defaultModel": offer.default_model,
            "payment": "free" if free else offer.payment,
            "pricing": _price_dict(offer.pricing),
            "encryption": list(offer.encryption),
            "sealedResults": list(offer.sealed),
            "commitReveal": list(offer.commit),
            "maxTokens": offer.max_tokens,
            "maxPromptChars": offer.max_prompt_chars,
            "heartbeat": offer.heartbeat_s,
            **offer.extra,
        },
    }
    if offer.picture:
        content["picture"] = offer.picture
    if offer.lud16:
        content["lud16"] = offer.lud16
    return content


def build_announcement(keys: Keys, offer: Offer, *, created_at: int, online: bool = True) -> Event:
    """The signed kind-31990 announcement/heartbeat."""
    d = offer.d_tag or default_d_tag(keys.public_key)
    tags = [
        ["d", d],
        *(["k", str(k)] for k in offer.kinds),
        ["t", SWARM_TOPIC],
        ["heartbeat", str(offer.heartbeat_s)],
        ["status", "online" if online else "offline"],
        ["expiration", str(created_at + EXPIRY_HEARTBEATS * offer.heartbeat_s)],
        *(["model", name, digest, engine] for name, digest, engine in offer.weights),
    ]
    content = json.dumps(offer_content(offer), separators=(",", ":"), sort_keys=True)
    return Event.create(keys, KIND_HANDLER, content, tags, created_at=created_at)


def is_alive(event: Event, now: float) -> bool:
    """The customer's rule for a heartbeat: ``online`` and not older than two intervals + slack."""
    if event.kind != KIND_HANDLER or event.tag_value("status") != "online":
        return False
    try:
        beat = int(event.tag_value("heartbeat") or "0")
    except ValueError:
        return False
    return beat > 0 and now - event.created_at <= 2 * beat + ALIVE_SLACK_S


class Announcer:
    """Decides when to publish: at once when the offer changed, else every heartbeat. Keeps
    ``created_at`` strictly increasing (a replacement stamped in the same second as the one it
    replaces could lose the tie on relays, which keep the lowest id)."""

    def __init__(self, heartbeat_s: int) -> None:
        self.heartbeat_s = heartbeat_s
        self._content: dict[str, Any] | None = None
        self.last_created_at = 0

    def changed(self, offer: Offer) -> bool:
        return offer_content(offer) != self._content

    def due(self, offer: Offer, now: float) -> bool:
        return self.changed(offer) or now - self.last_created_at >= self.heartbeat_s

    def forget(self) -> None:
        """The last announcement did not get out: the next check publishes again."""
        self._content = None

    def next(self, keys: Keys, offer: Offer, now: float, *, online: bool = True) -> Event:
        created_at = max(int(now), self.last_created_at + 1)
        event = build_announcement(keys, offer, created_at=created_at, online=online)
        self._content = offer_content(offer)
        self.last_created_at = created_at
        return event
