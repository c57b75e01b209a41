"""What the node announces and when: its NIP-89 handler announcement (kind 31990), which doubles
as its heartbeat. Pure. The event's format (tags, content, liveness rule) is
:mod:`client.dvm.nip89`'s, shared with the customers who parse it; this module holds the
provider's side: the :class:`Offer` (prices as the node's :class:`~provider.pricing.Pricing`)
and the :class:`Announcer`, which decides when to re-publish.

Heartbeat (see docs/provider-guide.md, "Announcement and heartbeat"): the node re-publishes the
same addressable announcement every ``heartbeat_s`` seconds with a fresh ``created_at``, at once
when the offer changes, and once with ``status`` ``offline`` on a graceful shutdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from client.dvm import nip89
from client.dvm.nip89 import (
    KIND_HANDLER,
    Announcement,
    announcement_content,
    default_d_tag,
    is_alive,
)
from client.dvm.nip90 import KIND_TEXT_GENERATION
from client.nostr.event import Event
from client.nostr.keys import Keys

from .pricing import Pricing

PaymentPolicy = Literal["free", "after", "before"]


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

    def announcement(self) -> Announcement:
        return Announcement(
            models=self.models,
            price=self.pricing.default.announced,
            model_prices={m: p.announced for m, p in self.pricing.models.items()},
            payment=self.payment,
            max_tokens=self.max_tokens,
            max_prompt_chars=self.max_prompt_chars,
            heartbeat_s=self.heartbeat_s,
            name=self.name,
            about=self.about,
            picture=self.picture,
            lud16=self.lud16,
            default_model=self.default_model,
            encryption=self.encryption,
            sealed=self.sealed,
            commit=self.commit,
            d_tag=self.d_tag,
            extra=self.extra,
            weights=self.weights,
            kinds=self.kinds,
        )


def build_announcement(keys: Keys, offer: Offer, *, created_at: int, online: bool = True) -> Event:
    """The signed kind-31990 announcement/heartbeat of ``offer``."""
    return nip89.build_announcement(
        keys, offer.announcement(), created_at=created_at, online=online
    )


class Announcer:
    """Decides when to publish: at once when the offer changed, else every heartbeat. Keeps
    ``created_at`` strictly increasing (a replacement stamped in the same second as the one it
    replaces could lose the tie on relays, which keep the lowest id)."""

    def __init__(self, heartbeat_s: int) -> None:
        self.heartbeat_s = heartbeat_s
        self._content: dict[str, Any] | None = None
        self.last_created_at = 0

    def changed(self, offer: Offer) -> bool:
        return announcement_content(offer.announcement()) != self._content

    def due(self, offer: Offer, now: float) -> bool:
        return self.changed(offer) or now - self.last_created_at >= self.heartbeat_s

    def forget(self) -> None:
        """The last announcement did not get out: the next check publishes again."""
        self._content = None

    def next(self, keys: Keys, offer: Offer, now: float, *, online: bool = True) -> Event:
        created_at = max(int(now), self.last_created_at + 1)
        announcement = offer.announcement()
        event = nip89.build_announcement(keys, announcement, created_at=created_at, online=online)
        self._content = announcement_content(announcement)
        self.last_created_at = created_at
        return event


__all__ = [
    "KIND_HANDLER",
    "Announcer",
    "Offer",
    "PaymentPolicy",
    "build_announcement",
    "default_d_tag",
    "is_alive",
]
