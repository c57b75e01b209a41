"""`python -m relay_mock [--host] [--port] [--db PATH] ...`: the same as `swarm relay`, without
loading the other subcommands (faster to start)."""

from __future__ import annotations

import argparse
import sys

from .cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relay_mock")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["relay", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
