"""NIP-89 announcement / heartbeat: tags, content keys, republish rules, liveness."""

from __future__ import annotations

import json

from client.nostr.keys import Keys
from provider.announce import (
    KIND_HANDLER,
    Announcer,
    Offer,
    build_announcement,
    default_d_tag,
    is_alive,
)
from provider.pricing import Price, Pricing

KEYS = Keys.generate()


def offer(**kw: object) -> Offer:
    base: dict[str, object] = {
        "models": ("llama3", "phi3"),
        "pricing": Pricing(
            msats_per_1k_prompt=1000,
            msats_per_1k_completion=3000,
            min_msats=2500,
            models={"phi3": Price(min_msats=1)},
        ),
        "payment": "after",
        "max_tokens": 2048,
        "max_prompt_chars": 32000,
        "heartbeat_s": 120,
        "name": "node",
    }
    base.update(kw)
    return Offer(**base)  # type: ignore[arg-type]


def test_announcement_tags_and_content() -> None:
    ev = build_announcement(KEYS, offer(), created_at=1000)
    assert ev.verify() and ev.kind == KIND_HANDLER == 31990
    assert ev.tag_value("d") == default_d_tag(KEYS.public_key)
    assert ev.tag_value("k") == "5050"
    assert ev.tag_value("t") == "nostr-swarm"
    assert ev.tag_value("heartbeat") == "120"
    assert ev.tag_value("status") == "online"
    assert ev.tag_value("expiration") == str(1000 + 3 * 120)
    c = json.loads(ev.content)
    assert c["name"] == "node" and c["amount"] == "3"  # 2500 msats -> 3 sats, rounded up
    assert c["supportsEncryption"] is True and c["encryptionSupported"] is True
    assert c["nip90Params"]["model"]["values"] == ["llama3", "phi3"]
    s = c["nostrSwarm"]
    assert s["payment"] == "after" and s["models"] == ["llama3", "phi3"]
    assert s["pricing"]["msatsPer1kCompletion"] == 3000
    assert s["pricing"]["models"]["phi3"]["minMsats"] == 1
    assert s["encryption"] == ["nip44", "nip04"] and s["sealedResults"] == ["nip44"]
    assert s["commitReveal"] == ["sha256"] and c["nip90Params"]["commit"]["values"] == ["sha256"]
    assert s["maxTokens"] == 2048 and s["heartbeat"] == 120


def test_free_offer_says_free() -> None:
    c = json.loads(build_announcement(KEYS, offer(payment="free"), created_at=1).content)
    assert c["amount"] == "free" and c["nostrSwarm"]["payment"] == "free"


def test_announcer_republishes_on_change_and_heartbeat() -> None:
    a = Announcer(heartbeat_s=60)
    o = offer()
    assert a.due(o, 1000)
    first = a.next(KEYS, o, 1000)
    assert not a.due(o, 1059)
    assert a.due(o, 1060)
    changed = offer(models=("llama3",))
    assert a.due(changed, 1001)
    # Same second as the last one: the timestamp still moves forward so it replaces it.
    second = a.next(KEYS, changed, 1000)
    assert second.created_at == first.created_at + 1


def test_is_alive() -> None:
    ev = build_announcement(KEYS, offer(heartbeat_s=100), created_at=1000)
    assert is_alive(ev, 1000 + 260)
    assert not is_alive(ev, 1000 + 261)
    off = build_announcement(KEYS, offer(), created_at=1000, online=False)
    assert not is_alive(off, 1000)


def test_forget_makes_the_next_check_due() -> None:
    a = Announcer(heartbeat_s=600)
    o = offer()
    a.next(KEYS, o, 1000)
    assert not a.due(o, 1001)
    a.forget()
    assert a.due(o, 1001)
