"""Who may read and act: the admin key by Bearer header or by session cookie (pure, with a
manual clock)."""

from __future__ import annotations

import pytest

from router.clock import ManualClock
from router.dashboard.access import COOKIE, AccessDenied, DashboardAccess

KEY = "the-admin-key-0123456789"


def cookie(sid: str) -> dict[str, str]:
    return {"cookie": f"other=1; {COOKIE}={sid}"}


def test_open_reading_without_keys_but_acting_needs_the_admin_key() -> None:
    access = DashboardAccess(KEY, require_key=False)
    grant = access.grant({})
    assert grant.read and not grant.act and grant.via == "open"
    with pytest.raises(AccessDenied) as err:
        access.need_act(grant, {})
    assert err.value.status == 401


def test_required_key_refuses_reading_without_it() -> None:
    access = DashboardAccess(KEY, require_key=True)
    grant = access.grant({})
    assert not grant.read
    with pytest.raises(AccessDenied) as err:
        access.need_read(grant)
    assert (err.value.status, err.value.code) == (401, "login_required")


def test_required_key_with_no_admin_key_configured_is_closed() -> None:
    access = DashboardAccess(None, require_key=True)
    with pytest.raises(AccessDenied) as err:
        access.need_read(access.grant({}))
    assert (err.value.status, err.value.code) == (403, "no_admin_key")
    with pytest.raises(AccessDenied) as err:
        access.login(KEY)
    assert err.value.status == 403


def test_bearer_admin_key_reads_and_acts_a_wrong_one_is_refused() -> None:
    access = DashboardAccess(KEY, require_key=True)
    grant = access.grant({"authorization": f"Bearer {KEY}"})
    assert grant.read and grant.act and grant.via == "bearer"
    access.need_act(grant, {"origin": "https://elsewhere.example"})  # no CSRF on this path
    for header in ("Bearer wrong-key", f"Basic {KEY}", "Bearer"):
        with pytest.raises(AccessDenied) as err:
            access.grant({"authorization": header})
        assert err.value.status == 401


def test_login_makes_a_session_that_needs_its_csrf_token_to_act() -> None:
    clock = ManualClock(1000.0)
    access = DashboardAccess(KEY, require_key=True, clock=clock, session_ttl_s=60)
    sid, _ = access.login(KEY)
    grant = access.grant(cookie(sid))
    assert grant.read and grant.act and grant.via == "session" and grant.csrf
    same = {"host": "127.0.0.1:8080", "origin": "http://127.0.0.1:8080"}
    access.need_act(grant, {**same, "x-csrf-token": grant.csrf})
    for headers in (
        same,
        {**same, "x-csrf-token": "guess"},
        {"host": "127.0.0.1:8080", "origin": "http://evil.example", "x-csrf-token": grant.csrf},
        {"sec-fetch-site": "cross-site", "x-csrf-token": grant.csrf},
    ):
        with pytest.raises(AccessDenied) as err:
            access.need_act(grant, headers)
        assert err.value.status == 403
    # Behind a proxy that rewrites Host, the browser's own word on the site is what counts.
    proxied = {"host": "backend:8080", "origin": "https://dash.example", "x-csrf-token": grant.csrf}
    access.need_act(grant, {**proxied, "sec-fetch-site": "same-origin"})
    clock.advance(61)
    assert not access.grant(cookie(sid)).read  # expired
    assert access.sessions == 0


def test_a_new_admin_key_ends_every_session() -> None:
    current = {"key": KEY}
    access = DashboardAccess(lambda: current["key"], require_key=True)
    sid, _ = access.login(KEY)
    assert access.grant(cookie(sid)).read
    current["key"] = "another-admin-key-9876543210"
    assert not access.grant(cookie(sid)).read


def test_logout_ends_the_session_and_the_cookie_is_httponly_strict() -> None:
    access = DashboardAccess(KEY, require_key=True, path="/dashboard")
    sid, _ = access.login(KEY)
    grant = access.grant(cookie(sid))
    access.logout(grant)
    assert not access.grant(cookie(sid)).read
    set_cookie = access.set_cookie(sid)
    assert set_cookie.startswith(f"{COOKIE}={sid};")
    for part in ("Path=/dashboard", "HttpOnly", "SameSite=Strict", "Max-Age="):
        assert part in set_cookie
    assert "Secure" not in set_cookie
    assert "Secure" in DashboardAccess(KEY, secure_cookie=True).set_cookie(sid)
    assert "Max-Age=0" in access.clear_cookie()


def test_failed_logins_are_throttled() -> None:
    clock = ManualClock(1000.0)
    access = DashboardAccess(KEY, clock=clock, max_failures=3, failure_window_s=60)
    for _ in range(3):
        with pytest.raises(AccessDenied) as err:
            access.login("not-the-key")
        assert err.value.status == 401
    with pytest.raises(AccessDenied) as err:
        access.login(KEY)  # even the right key waits: the form is being guessed at
    assert err.value.status == 429 and "Retry-After" in err.value.headers
    clock.advance(61)
    access.login(KEY)


def test_sessions_are_capped() -> None:
    access = DashboardAccess(KEY, max_sessions=2)
    first, _ = access.login(KEY)
    access.login(KEY)
    access.login(KEY)
    assert access.sessions == 2
    assert not access.grant(cookie(first)).act  # the oldest made room
