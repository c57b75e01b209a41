"""The interop harness itself: a missing peer skips with its reason outside CI and fails in CI;
the installed peers are the pinned versions."""

from __future__ import annotations

import json

import pytest

from tests.interop import peers


def test_a_missing_peer_skips_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        peers.require_js("no-such-package-here")
    assert "no-such-package-here" in str(skipped.value)
    assert "scripts/install-interop.sh" in str(skipped.value)


def test_a_missing_peer_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as failed:
        peers.require_js("no-such-package-here")
    assert "CI:" in str(failed.value)


@pytest.mark.parametrize("package", ["@getalby/sdk", "@nostr-dev-kit/ndk", "nostr-tools"])
def test_installed_npm_peers_are_the_pinned_versions(package: str) -> None:
    peers.require_js(package)
    pinned = json.loads((peers.JS_DIR / "package.json").read_text())["dependencies"]
    # nostr-tools is also what @getalby/sdk and NDK resolve to: one copy, at our pin.
    assert peers.js_version(package) == pinned[package]
