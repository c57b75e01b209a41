"""Interop with rust-nostr (the `nostr-sdk` package): events and NIP-44 in both directions."""

from __future__ import annotations

import nostr_sdk as sdk
import pytest

from client import Event, Keys
from client.nostr import nip04, nip44

CONTENTS = [
    "plain ascii",
    "héllo wörld — ünïcödé",
    "emoji 🌍🔥👩‍💻 and a flag 🇫🇷",
    "quotes \"double\" and 'single'",
    "back\\slash \\n not a newline",
    "control \x00\x01\x07\x08\x0b\x0c\x1f\x7f and \t tab \r\n newlines",
    "</script> & <b> and / slashes",
    "\u2028 line and \u2029 paragraph separators",
    "",
]


def _sdk_keys(keys: Keys) -> sdk.Keys:
    return sdk.Keys(sdk.SecretKey.parse(keys.secret_hex))


@pytest.mark.parametrize("content", CONTENTS)
def test_our_events_verify_in_nostr_sdk(content: str) -> None:
    keys = Keys.generate()
    ev = Event.create(keys, 1, content, [["t", "ünï"], ["e", "a" * 64, "", "root"]])
    theirs = sdk.Event.from_json(ev.to_json())
    assert theirs.verify()
    assert theirs.id().to_hex() == ev.id
    assert theirs.content() == content


@pytest.mark.parametrize("content", CONTENTS)
def test_nostr_sdk_events_verify_here(content: str) -> None:
    keys = Keys.generate()
    builder = sdk.EventBuilder(sdk.Kind(5050), content).tags(
        [sdk.Tag.parse(["param", "model", "ü"])]
    )
    theirs = builder.finalize(_sdk_keys(keys))
    ours = Event.from_json(theirs.as_json())
    assert ours.verify()
    assert ours.pubkey == keys.public_key
    assert ours.content == content
    assert ours.id == theirs.id().to_hex()


def test_tampered_sdk_event_fails_here() -> None:
    keys = Keys.generate()
    theirs = sdk.EventBuilder(sdk.Kind(1), "original").finalize(_sdk_keys(keys))
    forged = Event.from_json(theirs.as_json(), verify=False)
    forged.content = "changed"
    assert not forged.verify()


# rust-nostr 0.45 refuses plaintexts above about 65,500 bytes (its own cap) and predates the 2026-06
# extended length prefix, so longer payloads are tested against the spec vectors only.
@pytest.mark.parametrize("content", [c for c in CONTENTS if c] + ["x" * 65000])
def test_nip44_both_directions(content: str) -> None:
    a, b = Keys.generate(), Keys.generate()
    ck = nip44.conversation_key(a.secret_hex, b.public_key)
    ours = nip44.encrypt(content, ck)
    assert (
        sdk.nip44_decrypt(
            sdk.SecretKey.parse(b.secret_hex), sdk.PublicKey.parse(a.public_key), ours
        )
        == content
    )
    theirs = sdk.nip44_encrypt(
        sdk.SecretKey.parse(b.secret_hex),
        sdk.PublicKey.parse(a.public_key),
        content,
        sdk.Nip44Version.V2,
    )
    assert nip44.decrypt(theirs, ck) == content


def test_nip04_both_directions() -> None:
    a, b = Keys.generate(), Keys.generate()
    ours = nip04.encrypt("legacy ⚡", a.secret_hex, b.public_key)
    assert (
        sdk.nip04_decrypt(
            sdk.SecretKey.parse(b.secret_hex), sdk.PublicKey.parse(a.public_key), ours
        )
        == "legacy ⚡"
    )
    theirs = sdk.nip04_encrypt(
        sdk.SecretKey.parse(b.secret_hex), sdk.PublicKey.parse(a.public_key), "back"
    )
    assert nip04.decrypt(theirs, a.secret_hex, b.public_key) == "back"
