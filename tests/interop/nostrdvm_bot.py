"""nostrdvm's Bot (PyPI ``nostr-dvm``), unchanged: a DM-driven DVM client. It is told about one
DVM, ours, the way nostrdvm deployments add a DVM they do not run (``build_external_dvm``,
which reads that DVM's NIP-89 announcement from the relays). A user DMs it "1 <prompt>"; it
sends the job to the DVM (encrypted, if the announcement says ``supportsEncryption``), reads
the DVM's feedback and result, and DMs the user.

Usage: python nostrdvm_bot.py <relay url> <bot private key hex> <our provider's pubkey hex>
Run it with a fresh working directory (./db). Prints {"event": "started", ...} once it knows
the DVM, {"event": "listening"} once it hears DMs; then the Bot's own output.
"""

from __future__ import annotations

import json
import os
import sys

import nostr_dvm.bot as bot_module
from nostr_dvm.bot import Bot
from nostr_dvm.utils import sdk_utils
from nostr_dvm.utils.dvmconfig import DVMConfig
from nostr_dvm.utils.external_dvm_utils import build_external_dvm
from nostr_sdk import Keys, Kind


class _SaysWhenListening:
    """Test hook, not a change of behaviour: the Bot hears only events that arrive after it
    opens its notification stream (stored ones delivered earlier are lost), so say when."""

    def __init__(self, client: object) -> None:
        self._client = client

    def notifications(self) -> object:
        stream = self._client.notifications()  # type: ignore[attr-defined]
        print(json.dumps({"event": "listening"}), flush=True)
        return stream


async def _handle_notifications(client: object, handler: object) -> None:
    await sdk_utils.handle_notifications(_SaysWhenListening(client), handler)


bot_module.handle_notifications = _handle_notifications


def main() -> None:
    relay, secret, provider = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs("db", exist_ok=True)
    config = DVMConfig()
    config.PRIVATE_KEY = secret
    config.PUBLIC_KEY = Keys.parse(secret).public_key().to_hex()
    config.RELAY_LIST = [relay]
    config.ANNOUNCE_RELAY_LIST = [relay]
    config.SYNC_DB_RELAY_LIST = [relay]
    config.LNBITS_INVOICE_KEY = ""
    config.LNBITS_URL = ""
    dvm = build_external_dvm(provider, "text-generation", Kind(5050), 0, 0, config)
    config.SUPPORTED_DVMS = [dvm]
    started = {"event": "started", "encrypts": bool(dvm.SUPPORTS_ENCRYPTION)}
    print(json.dumps(started), flush=True)
    Bot(config)


if __name__ == "__main__":
    main()
