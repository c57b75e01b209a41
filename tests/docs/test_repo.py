"""The repository's own promises: CI runs exactly the README's test command; the CLI answers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    commands = _readme_commands()
    test_cmd = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()


def test_swarm_version_and_help() -> None:
    from client import __version__

    out = subprocess.run(
        [sys.executable, "-m", "client.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"nostr-swarm {__version__}"
    helptext = subprocess.run(
        [sys.executable, "-m", "client.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "keys" in helptext and "usage: swarm" in helptext


def test_swarm_keys_new_and_show() -> None:
    import contextlib
    import io
    import json

    from client.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        assert main(["keys", "new", "--json"]) == 0
    made = json.loads(buf.getvalue())
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["keys", "show", made["nsec"], "--json"]) == 0
    shown = json.loads(buf.getvalue())
    assert shown == {"npub": made["npub"], "public_key": made["public_key"]}
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["keys", "show", "nsec1bogus"]) == 2
    assert "swarm keys show" in err.getvalue()
