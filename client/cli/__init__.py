"""The ``swarm`` command: the entry point (:mod:`.command`) and the client's own subcommands
(``ask``, ``keys``, ``wallet``, ``providers``, ``reputation``); :mod:`.common` holds the options
every package's subcommands share."""

from client.cli.command import build_parser, load_command, main, reinstall_hint

__all__ = ["build_parser", "load_command", "main", "reinstall_hint"]
