"""One owner per DVM event: outside client/dvm/, production code (client, router, provider,
relay_mock) signs no event itself except the few non-DVM kinds listed here, so every job,
result, feedback, deletion, reveal call and announcement the project sends is built in
client/dvm/ (test actors that forge events on purpose live in tests/ and are not checked)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("client", "router", "provider", "relay_mock")
# file -> the kind constants it may sign (NIP-42 auth, NIP-47 wallet events).
ALLOWED = {
    "client/net/relay.py": {"KIND_AUTH"},
    "client/wallet/nip47.py": {"INFO_KIND", "REQUEST_KIND", "RESPONSE_KIND"},
}


def signed_kinds(path: Path) -> list[str]:
    """The kind argument of every ``Event.create(keys, kind, ...)`` call in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "create"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "Event"
        ):
            kind = node.args[1] if len(node.args) > 1 else None
            found.append(ast.unparse(kind) if kind is not None else "?")
    return found


def test_dvm_events_are_signed_in_client_dvm_only() -> None:
    signers: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("client/dvm/"):
                continue
            kinds = signed_kinds(path)
            if kinds:
                signers[rel] = set(kinds)
    assert signers == ALLOWED


def test_client_dvm_signs_every_dvm_kind() -> None:
    signed = {k for path in (ROOT / "client/dvm").glob("*.py") for k in signed_kinds(path)}
    assert {"KIND_HANDLER", "KIND_FEEDBACK", "KIND_DELETION", "KIND_REVEAL_CALL"} <= signed
    assert "request.kind + RESULT_OFFSET" in signed and "spec.kind" in signed
