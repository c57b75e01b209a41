"""The repository's own promises: CI runs exactly the README's test command; the CLI answers."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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


# --- dependencies: ranges in pyproject.toml, exact pins in constraints.txt --------------------


def _pins() -> dict[str, str]:
    """constraints.txt: distribution -> exact version (one platform's line when there are two)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate():
                (spec,) = req.specifier
                assert spec.operator == "==", line
                pins[canonicalize_name(req.name)] = spec.version
    return pins


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    every = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        every += extra
    return every


def test_constraints_pin_every_requirement_within_its_range() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _pins()
    for text in _requirements():
        req = Requirement(text)
        if canonicalize_name(req.name) == "nostr-swarm" or not (
            req.marker is None or req.marker.evaluate()
        ):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} has no pin in constraints.txt (bash scripts/lock.sh)"
        assert req.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def test_runtime_dependencies_are_ranges_and_test_tools_are_not_among_them() -> None:
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        operators = {spec.operator for spec in Requirement(text).specifier}
        assert operators == {">=", "<"}, text
    names = {Requirement(t).name for t in project["dependencies"]}
    assert not names & {"pytest", "pytest-asyncio", "hypothesis", "bolt11"}


def test_this_environment_is_the_pinned_one() -> None:
    """install.sh installs through constraints.txt: what is installed here is what is pinned."""
    from importlib.metadata import distributions

    from packaging.utils import canonicalize_name

    pins = _pins()
    off = {
        name: (dist.version, pins[name])
        for dist in distributions()
        if (name := canonicalize_name(dist.metadata["Name"])) in pins and dist.version != pins[name]
    }
    assert off == {}


def test_install_script_and_ci_use_the_constraints() -> None:
    install = (ROOT / "scripts" / "install.sh").read_text()
    installs = [ln for ln in install.splitlines() if re.search(r"pip(_quiet)? install", ln)]
    installs = [ln for ln in installs if not ln.lstrip().startswith(("#", "echo", "say"))]
    assert installs and all('-c "$pins"' in ln for ln in installs), installs
    assert re.search(r"^pins=constraints\.txt$", install, flags=re.M)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    tests = ci.index("bash scripts/install.sh && .venv/bin/python -m pytest")
    for step in (".venv/bin/lint-imports --no-cache", "bash scripts/check-core-install.sh"):
        assert step in ci and ci.index(step) < tests


def test_a_missing_extra_is_named_in_the_reinstall_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib.metadata import EntryPoint

    import client.cli.command as cli

    (tmp_path / "needs_yaml_cmd.py").write_text("import yaml_not_installed_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(
        name="serve", value="needs_yaml_cmd:register [gateway]", group="nostr_swarm.commands"
    )
    monkeypatch.setattr(cli, "entry_points", lambda group: [ep])
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "swarm serve is unavailable: No module named 'yaml_not_installed_here'" in err
    assert f'pip install -e "{ROOT}[gateway]"' in err  # from a checkout: an editable install


def test_the_subcommands_of_the_other_packages_name_their_extras() -> None:
    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    commands = eps["nostr_swarm.commands"]
    assert commands["serve"].endswith("[gateway]") and commands["state"].endswith("[gateway]")
    assert commands["provider"].endswith("[provider]") and commands["demo"].endswith("[provider]")
    assert commands["relay"].endswith("[relay]")
    assert not any("[" in commands[c] for c in ("keys", "ask", "providers", "reputation"))
