"""Options that several `swarm` subcommands share, defined once so they follow one rule.

``--relay URL`` (``-r``): repeat it, or give several URLs separated by commas or spaces. Without
it the relays come from ``SWARM_RELAYS`` (same separators); a subcommand that cannot work without
relays says so when neither is given.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

RELAYS_ENV = "SWARM_RELAYS"
# `swarm relay` listens here by default, and local defaults point here, so that the two meet.
LOCAL_RELAY_PORT = 7447
LOCAL_RELAY = f"ws://127.0.0.1:{LOCAL_RELAY_PORT}"


def split_relays(text: str) -> list[str]:
    """``"wss://a, wss://b  wss://c"`` -> the three URLs, in order, without repeats."""
    return list(dict.fromkeys(u for u in re.split(r"[\s,]+", text) if u))


def env_relays(environ: Mapping[str, str] | None = None) -> list[str]:
    """The relays named in ``SWARM_RELAYS`` (none when it is unset or blank)."""
    return split_relays((os.environ if environ is None else environ).get(RELAYS_ENV, ""))


class _RelayAction(argparse.Action):
    """Appends each ``--relay`` (split on commas and spaces); the first one given replaces the
    default taken from the environment instead of adding to it (argparse's ``append`` would)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        urls = split_relays(str(values))
        if not urls:
            parser.error(f"{option_string} needs a relay URL")
        current = getattr(namespace, self.dest, None)
        if current is None or current is self.default:
            current = []
        setattr(namespace, self.dest, list(dict.fromkeys([*current, *urls])))


def add_relay_option(
    parser: argparse.ArgumentParser,
    *,
    required: bool = False,
    fallback: Sequence[str] = (),
    what: str = "relay websocket URL",
    dest: str = "relay",
) -> None:
    """Add ``--relay/-r``. Its value is a list: the URLs given, else ``SWARM_RELAYS``, else
    ``fallback``. With ``required``, giving neither flag nor variable is a usage error."""
    from_env = env_relays()
    default = from_env or list(fallback)
    if fallback:
        otherwise = f", else {', '.join(fallback)}"
    elif required:
        otherwise = "; one of the two is required"
    else:
        otherwise = ""
    parser.add_argument(
        "--relay",
        "-r",
        action=_RelayAction,
        dest=dest,
        default=default,
        # Required only when the environment does not already name relays.
        required=required and not default,
        metavar="URL",
        help=f"{what}; repeat for several, or separate them with commas or spaces "
        f"(default: ${RELAYS_ENV}, comma- or space-separated{otherwise})",
    )


KEY_ENV = "SWARM_KEY"


def add_key_option(parser: argparse.ArgumentParser, *, what: str) -> None:
    """Add ``--key``: the user's secret key. ``None`` when not given; the handler then reads
    ``SWARM_KEY`` (it is a secret, so it is not shown as a default in ``--help``)."""
    parser.add_argument(
        "--key",
        metavar="NSEC",
        help=f"your secret key (nsec1… or hex): {what} (default: ${KEY_ENV})",
    )


def add_json_option(parser: argparse.ArgumentParser, *, what: str = "a table") -> None:
    """Add ``--json``: machine-readable output on stdout instead of ``what``."""
    parser.add_argument("--json", action="store_true", help=f"print JSON instead of {what}")
