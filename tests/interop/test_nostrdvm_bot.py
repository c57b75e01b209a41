"""nostrdvm's Bot (a DM-driven DVM client, PyPI ``nostr-dvm``) buying from our provider node.

The Bot learns our DVM from its NIP-89 announcement (``supportsEncryption``: it then encrypts the
job), reads our feedback by decrypting its content as a JSON tag list, and DMs the user. With our
old empty feedback content it could not decrypt it and dropped our status; with a tag list
lacking a ``content`` tag it showed the user our ciphertext.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from client.net.pool import RelayPool
from client.nostr import nip04
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from provider.node import ProviderNode
from relay_mock import Relay
from tests.interop.peers import require_nostrdvm, run_nostrdvm
from tests.support.nodes import mock_backend

DRIVER = Path(__file__).with_name("nostrdvm_bot.py")
WAIT = 30.0


@pytest.fixture(autouse=True)
def _installed() -> None:
    require_nostrdvm()


async def test_nostrdvm_bot_reads_our_encrypted_feedback_and_result(
    relay: Relay, tmp_path: Path
) -> None:
    node = ProviderNode(Keys.generate(), [relay.url], mock_backend(), connect_timeout=3.0)
    bot, me = Keys.generate(), Keys.generate()
    async with node, RelayPool([relay.url]) as pool:
        dms = pool.subscribe(Filter(kinds=[4], authors=[bot.public_key]))
        await dms.wait_eose()
        async with run_nostrdvm(
            DRIVER, relay.url, bot.secret_hex, node.keys.public_key, cwd=tmp_path
        ) as peer:
            started = await peer.expect("started", WAIT)
            assert started["encrypts"]  # it read supportsEncryption from our announcement
            await peer.expect("listening", WAIT)
            ask = nip04.encrypt("1 hello", me.secret_hex, bot.public_key)
            await pool.publish(Event.create(me, 4, ask, [["p", bot.public_key]]))
            await peer.expect_text(f"Received reaction from {node.keys.public_key}", WAIT)
            texts: list[str] = []
            async with asyncio.timeout(WAIT):
                async for dm in dms:
                    texts.append(nip04.decrypt(dm.content, me.secret_hex, bot.public_key))
                    if "Echo: hello" in texts:
                        break
    assert node.stats.completed == 1
    # What the user saw: our status text (none given for "processing": empty, never our
    # ciphertext), then the answer.
    assert texts[-1] == "Echo: hello" and set(texts[:-1]) <= {""}, texts
