"""The import rules of docs/architecture.md are import-linter contracts (pyproject.toml) that CI
runs; here each kind of contract is shown to fail on a deliberate violation in a copy of the
packages, and the unmodified copy to pass."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("client", "router", "provider", "relay_mock")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contract_names() -> dict[str, str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c["name"] for c in config["contracts"]}


CONTRACTS = _contract_names()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.fixture
def tree(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the packages and pyproject.toml that a test may break."""
    root = tmp_path / "tree"
    shutil.copytree(pristine, root)
    return root


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    # lint-imports puts its working directory first on sys.path, so it scans this copy and not
    # the installed checkout; a wide terminal keeps each contract's line whole.
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def broken(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The ids of the contracts that the run reports as broken."""
    return {cid for cid, name in CONTRACTS.items() if f"{name} BROKEN" in result.stdout}


def add_line(root: Path, module: str, line: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = root / module.replace(".", "/") / "__init__.py"
    path.write_text(path.read_text() + "\n" + line + "\n")


def test_the_repository_keeps_every_contract() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert broken(result) == set()
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


def test_an_unmodified_copy_keeps_every_contract(tree: Path) -> None:
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


# (module that gets the line, the line, contracts it must break, the import chain(s) reported)
VIOLATIONS = [
    pytest.param(
        "client.nostr.keys",
        "import router",
        {"packages"},
        "client.nostr.keys -> router",
        id="upward-import-client-to-router",
    ),
    pytest.param(
        "router.types",
        "from provider import pricing",
        {"packages"},
        "router.types -> provider",
        id="upward-import-router-to-provider",
    ),
    pytest.param(
        "provider.pricing",
        "import relay_mock",
        {"nothing-imports-relay-mock"},
        "provider.pricing -> relay_mock",
        id="relay-mock-in-provider",
    ),
    pytest.param(
        "relay_mock.kinds",
        "import router.types",
        {"relay-mock-uses-client-only"},
        "relay_mock.kinds -> router.types",
        id="router-in-relay-mock",
    ),
    pytest.param(
        "client.nostr.filter",
        "from client.net import pool",
        {"client-layers"},
        "client.nostr.filter -> client.net.pool",
        id="client-nostr-up-to-net",
    ),
    pytest.param(
        "client.dvm.nip90",
        "from client.wallet import guard",
        {"client-layers"},
        "client.dvm.nip90 -> client.wallet.guard",
        id="client-dvm-up-to-wallet",
    ),
    pytest.param(
        "client.dvm.sealing",
        "from client.net import relay",
        {"dvm-is-protocol", "pure"},
        "client.dvm.sealing -> client.net.relay",
        id="client-dvm-down-to-net",
    ),
    pytest.param(
        "client.nostr.nip19",
        "from client import errors",
        {"nostr-is-the-bottom"},
        "client.nostr.nip19 -> client.errors",
        id="client-nostr-to-client-root",
    ),
    pytest.param(
        "client.nostr.event",
        "import asyncio",
        {"pure"},
        "client.nostr.event -> asyncio",
        id="asyncio-in-client-nostr",
    ),
    pytest.param(
        "router.strategy",
        "import socket",
        {"pure"},
        "router.strategy -> socket",
        id="socket-in-router-strategy",
    ),
    pytest.param(
        "relay_mock.store",
        "import sqlite3",
        {"pure"},
        "relay_mock.store -> sqlite3",
        id="sqlite3-in-relay-mock-store",
    ),
    pytest.param(
        "provider.intake",
        "def _fetch() -> None:\n    import aiohttp  # inside a function: still an import",
        {"pure"},
        "provider.intake -> aiohttp",
        id="lazy-aiohttp-in-provider-intake",
    ),
    pytest.param(
        "client.customer.quorum",
        "from client.net import pool",
        {"pure"},
        ("client.customer.quorum -> client.net.pool", "client.net.relay -> websockets"),
        id="websockets-through-another-module",
    ),
    pytest.param(
        "client.wallet.invoices",
        "import yaml",
        {"client-core-dependencies"},
        "client.wallet.invoices -> yaml",
        id="gateway-dependency-in-client",
    ),
    pytest.param(
        "client.customer.reputation",
        "import llama_cpp",
        {"client-core-dependencies"},
        "client.customer.reputation -> llama_cpp",
        id="provider-dependency-in-client",
    ),
    pytest.param(
        "router.backends.mock",
        "from router.gateway import errors",
        {"router-core-without-gateway"},
        "router.backends.mock -> router.gateway.errors",
        id="router-backend-to-gateway",
    ),
]


@pytest.mark.parametrize(("module", "line", "contracts", "chain"), VIOLATIONS)
def test_a_violation_breaks_its_contract(
    tree: Path, module: str, line: str, contracts: set[str], chain: str | tuple[str, ...]
) -> None:
    add_line(tree, module, line)
    result = lint(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert contracts <= broken(result), result.stdout
    for link in (chain,) if isinstance(chain, str) else chain:
        assert link in result.stdout


def test_a_type_checking_import_is_not_an_import(tree: Path) -> None:
    """Annotations may name asyncio types: an import under TYPE_CHECKING never runs."""
    add_line(
        tree,
        "client.nostr.event",
        "from typing import TYPE_CHECKING\n" + ("if TYPE_CHECKING:\n    import asyncio"),
    )
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr


def test_standard_library_bans_need_the_external_packages_in_the_graph(tree: Path) -> None:
    """grimp leaves every package outside the root packages, the standard library included, out
    of the graph unless include_external_packages is set; import-linter then refuses a contract
    that forbids one, so a ban on asyncio can never pass silently."""
    pyproject = tree / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "include_external_packages = true", "include_external_packages = false"
        )
    )
    result = lint(tree)
    assert result.returncode != 0
    assert "include_external_packages=True" in result.stdout + result.stderr


# --- which third-party packages each package imports, against the extras that install them ---

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Imports that run only when their feature is used, and need an extra the package does not
# require: the `semantic` comparator's model, `--loop auto` taking uvloop when it is there, and
# `swarm serve --server uvicorn|granian`.
OPTIONAL_IMPORTS = {
    "client.customer.agreement.embedding": ("semantic", {"numpy", "onnxruntime", "tokenizers"}),
    "relay_mock.cli": ("gateway", {"uvloop"}),
    "router.cli_serve": ("asgi", {"uvicorn", "granian"}),
}
# The extras a package needs besides the core dependencies (what its subcommands' entry points
# name in pyproject.toml).
PACKAGE_EXTRAS = {
    "client": (),
    "relay_mock": ("relay",),
    "router": ("router", "gateway", "state", "local"),
    "provider": ("provider",),
}


def requirement_names(extras: tuple[str, ...] = ()) -> set[str]:
    """The distributions the core (no extras) or the extras name, self-references expanded."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    names: set[str] = set()
    todo = [(None, PYPROJECT["dependencies"])] if not extras else []
    todo += [(e, PYPROJECT["optional-dependencies"][e]) for e in extras]
    seen: set[str | None] = set()
    while todo:
        extra, requirements = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in requirements:
            req = Requirement(text)
            if canonicalize_name(req.name) == "nostr-swarm":
                todo += [(e, PYPROJECT["optional-dependencies"][e]) for e in req.extras]
            else:
                names.add(canonicalize_name(req.name))
    return names


@functools.cache
def distribution_of(module: str) -> str:
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    found = packages_distributions().get(module)
    # A package of an extra that is not installed here is named as it is imported.
    return canonicalize_name(found[0] if found else module)


@functools.cache
def third_party_imports() -> dict[str, set[str]]:
    """module of ours -> the top-level third-party packages it imports (at any depth, lazily
    too; not under TYPE_CHECKING), as grimp sees them."""
    import grimp

    graph = grimp.build_graph(
        *PACKAGES,
        include_external_packages=True,
        exclude_type_checking_imports=True,
        cache_dir=None,
    )
    ours = {m for m in graph.modules if m.split(".")[0] in PACKAGES}
    return {
        module: {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if imported.split(".")[0] not in PACKAGES and imported not in sys.stdlib_module_names
        }
        for module in ours
    }


def test_every_third_party_import_is_installed_by_the_package_extras() -> None:
    core = requirement_names()
    wrong = []
    for module, imported in sorted(third_party_imports().items()):
        allowed = core | requirement_names(PACKAGE_EXTRAS[module.split(".")[0]])
        optional_extra, optional = OPTIONAL_IMPORTS.get(module, ("", set()))
        for name in sorted(imported):
            if name in optional:
                assert distribution_of(name) in requirement_names((optional_extra,)), name
            elif distribution_of(name) not in allowed:
                wrong.append(f"{module} imports {name} ({distribution_of(name)})")
    assert wrong == []


def test_every_core_dependency_is_used_by_client() -> None:
    """The bare install carries nothing `client` does not import."""
    imported = {
        distribution_of(name)
        for module, names in third_party_imports().items()
        if module.split(".")[0] == "client"
        for name in names
    }
    assert requirement_names() <= imported


def test_mypy_is_strict_for_exactly_the_pure_modules() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    pure = next(c for c in tool["importlinter"]["contracts"] if c["id"] == "pure")
    strict = next(o for o in tool["mypy"]["overrides"] if o.get("warn_return_any"))
    assert {m.removesuffix(".*") for m in strict["module"]} == set(pure["source_modules"])
