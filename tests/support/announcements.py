"""Helpers for the discovery tests: a settable clock and real provider announcements (built by
the provider's own code, so the customer's parser is checked against what nodes send)."""

from __future__ import annotations

import time

from client.nostr.event import Event
from client.nostr.keys import Keys
from provider.announce import Offer, build_announcement
from provider.pricing import Price, Pricing


class FakeClock:
    """UNIX seconds that move only when told."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time())) if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def offer(**kw: object) -> Offer:
    base: dict[str, object] = {
        "models": ("llama3", "phi3"),
        "pricing": Pricing(
            msats_per_1k_prompt=1000,
            msats_per_1k_completion=3000,
            min_msats=2000,
            models={"phi3": Price(msats_per_1k_completion=1000, min_msats=500)},
        ),
        "payment": "after",
        "max_tokens": 2048,
        "max_prompt_chars": 32000,
        "heartbeat_s": 120,
        "name": "node",
    }
    base.update(kw)
    return Offer(**base)  # type: ignore[arg-type]


def announcement(keys: Keys, created_at: int, *, online: bool = True, **kw: object) -> Event:
    return build_announcement(keys, offer(**kw), created_at=created_at, online=online)
