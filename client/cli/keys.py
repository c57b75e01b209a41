"""`swarm keys`: make and inspect Nostr keys."""

from __future__ import annotations

import argparse
import json
import sys

from client.nostr.errors import InvalidKey
from client.nostr.keys import Keys, parse_pubkey


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "keys", help="make and inspect Nostr keys", description="Make and inspect Nostr keys."
    )
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = ks.add_parser("new", help="generate a new key pair and print it")
    new.add_argument("--json", action="store_true", help="print JSON instead of text")
    new.set_defaults(handler=_new)
    show = ks.add_parser(
        "show", help="show the public forms of a secret (hex or nsec) or public key"
    )
    show.add_argument("key", help="secret key (hex or nsec1…) or public key (npub1…)")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(handler=_show)


def _print(data: dict[str, str], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        width = max(len(k) for k in data)
        for k, v in data.items():
            print(f"{k:<{width}}  {v}")


def _new(args: argparse.Namespace) -> int:
    keys = Keys.generate()
    _print(
        {
            "npub": keys.npub,
            "public_key": keys.public_key,
            "nsec": keys.nsec,
            "secret_hex": keys.secret_hex,
        },
        args.json,
    )
    if not args.json:
        print(
            "\nKeep the nsec secret: anyone who has it can sign and spend as you.", file=sys.stderr
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    text = args.key.strip()
    try:
        if text.lower().startswith("npub1"):
            pk = parse_pubkey(text)
            from client.nostr import nip19

            _print({"npub": nip19.encode("npub", bytes.fromhex(pk)), "public_key": pk}, args.json)
        else:
            keys = Keys.from_secret(text)
            _print({"npub": keys.npub, "public_key": keys.public_key}, args.json)
    except InvalidKey as exc:
        print(f"swarm keys show: {exc}", file=sys.stderr)
        return 2
    return 0
