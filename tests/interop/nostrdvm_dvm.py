"""A real nostrdvm (PyPI ``nostr-dvm``) DVM for kind 5050, run by nostrdvm's own interpreter
(tests/interop/.venv-nostrdvm): its GenericDVM task and its DVM engine, unchanged, with only the
configuration a deployment sets (keys, relays, price, NIP-89 content) pointed at the test relay.

Usage: python nostrdvm_dvm.py <relay url> <private key hex> <fix cost in sats> [announce|quiet]
("quiet": no kind-31990 at start, like a DVM announced once long ago that only beats now)
Environment: LNBITS_HOST and LNBITS_INVOICE_KEY (nostrdvm's own names) point a priced DVM at an
LNbits API for its invoices (tests/interop/fake_lnbits.py); without them it asks for payment with
no invoice. NOSTRDVM_ANSWER: a fixed answer instead of echoing the input (its LLM call, replaced).
Run it with a fresh working directory: nostrdvm keeps its SQLite files under ./db/.
Prints {"event": "started", "pubkey": ...}; the engine's own output goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys

from nostr_dvm.tasks.generic_dvm import GenericDVM
from nostr_dvm.utils.admin_utils import AdminConfig
from nostr_dvm.utils.dvmconfig import DVMConfig
from nostr_dvm.utils.nip89_utils import NIP89Config
from nostr_sdk import Keys, Kind


def main() -> None:
    relay, secret, cost = sys.argv[1], sys.argv[2], float(sys.argv[3])
    announce = (sys.argv[4] if len(sys.argv) > 4 else "announce") == "announce"
    os.makedirs("db", exist_ok=True)
    keys = Keys.parse(secret)

    config = DVMConfig()
    config.PRIVATE_KEY = secret
    config.PUBLIC_KEY = keys.public_key().to_hex()
    config.IDENTIFIER = "interop"
    # Only the test relay: nothing else is dialled (no DB sync, announcements there too).
    config.RELAY_LIST = [relay]
    config.ANNOUNCE_RELAY_LIST = [relay]
    config.SYNC_DB_RELAY_LIST = [relay]
    kind = int(os.environ.get("NOSTRDVM_KIND", "5050"))  # 5001 summarization, 5002, ...
    config.KIND = Kind(kind)
    config.FIX_COST = cost
    # As nostrdvm's build_default_config reads them; only LNbits on 127.0.0.1 is ever dialled.
    config.LNBITS_URL = os.environ.get("LNBITS_HOST", "")
    config.LNBITS_INVOICE_KEY = os.environ.get("LNBITS_INVOICE_KEY", "")
    # Without LNbits it asks for payment without an invoice (nothing to pay it with).
    config.PROVIDE_INVOICE = bool(config.LNBITS_URL and config.LNBITS_INVOICE_KEY)
    config.DELETE_ANNOUNCEMENT_ON_SHUTDOWN = False

    nip89 = NIP89Config()
    nip89.DTAG = "interop-dvm"
    nip89.NAME = "nostrdvm interop"
    nip89.KIND = Kind(kind)  # else GenericDVM announces its default kind, 5000
    nip89.CONTENT = json.dumps(
        {
            "name": "nostrdvm interop",
            "about": "a nostrdvm GenericDVM on the test relay",
            "supportsEncryption": True,
            "amount": str(int(cost)),
            "nip90Params": {},
        }
    )

    admin = AdminConfig()
    admin.REBROADCAST_NIP89 = announce  # publish its kind-31990 announcement at start

    dvm = GenericDVM(
        name="nostrdvm interop",
        dvm_config=config,
        nip89config=nip89,
        admin_config=admin,
        options={"some_option": ""},
    )

    answer = os.environ.get("NOSTRDVM_ANSWER")

    async def process(request_form: dict) -> str:
        options = dvm.set_options(request_form)
        return answer if answer is not None else "nostrdvm says: " + options.get("input", "")

    dvm.process = process
    print(json.dumps({"event": "started", "pubkey": config.PUBLIC_KEY}), flush=True)
    dvm.run()
    # Keep the main thread alive while the engine's thread runs: once it returns, the interpreter
    # is shutting down and the engine's asyncio.to_thread calls (its LNbits requests) fail.
    dvm.nostr_dvm_thread.join()


if __name__ == "__main__":
    main()
