"""The `swarm` command. Subcommands come from the ``nostr_swarm.commands`` entry-point group, so
this bottom-layer package never imports the packages above it; each registers its own."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from client import __version__

log = logging.getLogger("swarm")

# Every subcommand's name; they are loaded in this order (the rest alphabetically after).
ORDER = ("demo", "ask", "relay", "provider", "serve", "wallet", "providers", "reputation", "keys")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. With ``only`` set to a known subcommand, just that one is loaded:
    importing every subcommand's module (gateway, provider, wallet...) would slow every start."""
    parser = argparse.ArgumentParser(
        prog="swarm",
        description="nostr-swarm: buy and sell LLM completions on Nostr "
        "(NIP-90 jobs, quorum-verified answers, payment in sats).",
    )
    parser.add_argument("--version", action="version", version=f"nostr-swarm {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    eps = {ep.name: ep for ep in entry_points(group="nostr_swarm.commands")}
    names = [n for n in ORDER if n in eps] + sorted(n for n in eps if n not in ORDER)
    if only in eps:
        names = [only]
    for name in names:
        load_command(eps[name])(sub)
    return parser


Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def reinstall_hint(extras: Sequence[str] = ()) -> str:
    """The command that repairs this installation, with the extras a subcommand needs (its entry
    point names them): from a checkout, an editable install of it."""
    wanted = f"[{','.join(extras)}]" if extras else ""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file():
        return f'{sys.executable} -m pip install -e "{root}{wanted}"'
    if extras:
        return f'{sys.executable} -m pip install "nostr-swarm{wanted}"'
    return f"{sys.executable} -m pip install --force-reinstall nostr-swarm"


def load_command(ep: EntryPoint, parent: str = "swarm") -> Register:
    """The subcommand's ``register`` function, or, when its module cannot be imported (a missing
    or broken dependency), a stand-in that says why: a subcommand must never just vanish.
    ``parent``: the command it belongs to (``swarm wallet`` for the wallet's actions)."""
    try:
        register: Register = ep.load()
    except ImportError as exc:
        log.debug("subcommand %s unavailable", ep.name, exc_info=True)
        return _unavailable(ep.name, exc, ep.extras, parent)
    return register


def _unavailable(
    name: str, exc: ImportError, extras: Sequence[str], parent: str = "swarm"
) -> Register:
    message = f"{parent} {name} is unavailable: {exc} — reinstall with: {reinstall_hint(extras)}"

    def handler(args: argparse.Namespace) -> int:
        print(message, file=sys.stderr)
        return 2

    def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        # No options of its own and no --help: whatever follows the name ends up here.
        p = sub.add_parser(name, help=f"(unavailable: {exc})", add_help=False)
        p.set_defaults(handler=handler, accepts_any_arguments=True)

    return register


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=first)
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")  # as parse_args() does
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ImportError as exc:  # a module the subcommand imports late (only when run) is missing
        log.debug("swarm %s: import failed", args.command, exc_info=True)
        extras = next(
            (
                ep.extras
                for ep in entry_points(group="nostr_swarm.commands")
                if ep.name == args.command
            ),
            [],
        )
        print(
            f"swarm {args.command} is unavailable: {exc} — "
            f"reinstall with: {reinstall_hint(extras)}",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:  # `swarm ... | head`: the reader left; stop quietly, as shells do
        with contextlib.suppress(OSError, ValueError):
            # Python flushes stdout at exit; point it at /dev/null so that flush cannot fail too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
