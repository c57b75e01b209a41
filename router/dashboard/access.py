"""Who may see the dashboard and who may act on it.

- With ``require_key`` (a gateway that has API keys), only the admin key sees anything: as
  ``Authorization: Bearer <admin key>``, or through the page's login form, which trades the key
  for a session cookie (HttpOnly, SameSite=Strict, ``Path`` the dashboard's). Without it, anyone
  who reaches the port may read.
- Acting (a POST that changes state: asking a question, revoking a key) always needs the admin
  key. On the cookie path a POST must also carry the session's CSRF token in ``X-CSRF-Token``
  and come from the page's own origin (``Origin`` and ``Sec-Fetch-Site``, when the browser sends
  them); a Bearer header is never sent by a browser on its own, so it needs neither.

Keys and session ids are compared by SHA-256 digest with :func:`hmac.compare_digest`; only
digests are kept. Failed logins are counted: past ``max_failures`` in ``failure_window_s`` the
form answers 429 until the window has passed (Bearer requests are not affected). Nothing here
logs a key. Changing the admin key ends every session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

COOKIE = "swarm_dashboard"
CSRF_HEADER = "x-csrf-token"


class AccessDenied(Exception):
    """A request the dashboard refuses: ``status`` (401, 403, 429), a message for the page and a
    machine-readable ``code``."""

    def __init__(
        self, status: int, message: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class Grant:
    """What one request may do. ``via``: how it was let in; ``csrf``: the session's token (the
    page needs it for its POSTs)."""

    read: bool
    act: bool
    via: Literal["bearer", "session", "open", "none"]
    csrf: str | None = None
    session: str | None = None  # the session id's digest (hex), for logout


@dataclass(slots=True)
class _Session:
    csrf: str
    expires: float
    admin: bytes  # the admin key's digest when the session was made


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    # The HTTP server joins repeated headers with ", "; browsers separate cookies with "; ".
    for part in header.replace(",", ";").split(";"):
        name, eq, value = part.strip().partition("=")
        if eq and name not in out:
            out[name] = value.strip()
    return out


class DashboardAccess:
    """The access rules of one dashboard. ``admin_key`` and ``require_key`` may be callables, read
    on every request, so a process that reloads its configuration needs no extra call."""

    def __init__(
        self,
        admin_key: str | Callable[[], str | None] | None,
        *,
        require_key: bool | Callable[[], bool] = False,
        clock: Callable[[], float] = time.time,
        path: str = "/dashboard",
        session_ttl_s: float = 12 * 3600,
        max_sessions: int = 32,
        max_failures: int = 10,
        failure_window_s: float = 60.0,
        secure_cookie: bool = False,
    ) -> None:
        self._admin = admin_key if callable(admin_key) else (lambda: admin_key)
        self._require = require_key if callable(require_key) else (lambda: require_key)
        self._clock = clock
        self.path = path
        self.session_ttl_s = session_ttl_s
        self.max_sessions = max_sessions
        self.max_failures = max_failures
        self.failure_window_s = failure_window_s
        self.secure_cookie = secure_cookie
        self._sessions: dict[bytes, _Session] = {}
        self._failures: deque[float] = deque()

    # --- the current rules ---------------------------------------------------------------------

    @property
    def required(self) -> bool:
        """Whether reading needs the admin key."""
        return bool(self._require())

    @property
    def has_admin_key(self) -> bool:
        return bool(self._admin())

    def _admin_digest(self) -> bytes | None:
        key = self._admin()
        return _digest(key) if key else None

    # --- requests -------------------------------------------------------------------------------

    def grant(self, headers: Mapping[str, str]) -> Grant:
        """What a request with these (lower-case) headers may do. A wrong Bearer key is refused
        (401), never treated as no key."""
        admin = self._admin_digest()
        auth = headers.get("authorization")
        if auth:
            scheme, _, key = auth.partition(" ")
            key = key.strip()
            ok = (
                admin is not None
                and scheme.lower() == "bearer"
                and hmac.compare_digest(_digest(key), admin)
            )
            if not ok:
                raise AccessDenied(
                    401,
                    "the dashboard takes 'Authorization: Bearer <admin key>' (the gateway's "
                    "admin key)",
                    "invalid_admin_key",
                )
            return Grant(True, True, "bearer")
        sid = _cookies(headers.get("cookie", "")).get(COOKIE)
        if sid and admin is not None:
            ref = _digest(sid)
            session = self._sessions.get(ref)
            if session is not None:
                if self._clock() < session.expires and hmac.compare_digest(session.admin, admin):
                    return Grant(True, True, "session", session.csrf, ref.hex())
                del self._sessions[ref]
        if self.required:
            return Grant(False, False, "none")
        return Grant(True, False, "open")

    def need_read(self, grant: Grant) -> None:
        if grant.read:
            return
        if not self.has_admin_key:
            raise AccessDenied(
                403,
                "this dashboard needs the gateway's admin key, and none is configured "
                "(admin: {key_env: ...} in the gateway's config)",
                "no_admin_key",
            )
        raise AccessDenied(401, "log in with the admin key", "login_required")

    def need_act(self, grant: Grant, headers: Mapping[str, str]) -> None:
        """For a POST that changes state: the admin key, and on the cookie path the CSRF token
        and a same-origin request."""
        if not grant.act:
            if not self.has_admin_key:
                raise AccessDenied(
                    403, "actions need an admin key, and none is configured", "no_admin_key"
                )
            raise AccessDenied(401, "actions need the admin key: log in first", "login_required")
        if grant.via == "session":
            self.same_origin(headers)
            token = headers.get(CSRF_HEADER, "")
            if not grant.csrf or not hmac.compare_digest(token.encode(), grant.csrf.encode()):
                raise AccessDenied(403, "missing or wrong CSRF token", "csrf")

    def same_origin(self, headers: Mapping[str, str]) -> None:
        """Refuse a browser request that another site made (login CSRF, forged actions). A
        browser that sends ``Sec-Fetch-Site`` (all current ones) is taken at its word, which
        holds behind a proxy that rewrites ``Host``; an older one's ``Origin`` must name the
        ``Host`` it asked."""
        site = headers.get("sec-fetch-site")
        if site is not None:
            if site not in ("same-origin", "none"):
                raise AccessDenied(403, "cross-site requests are refused", "cross_site")
            return
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != headers.get("host", ""):
            raise AccessDenied(403, "cross-origin requests are refused", "cross_site")

    # --- sessions --------------------------------------------------------------------------------

    def login(self, key: str) -> tuple[str, Grant]:
        """Trade the admin key for a session: ``(session id for the cookie, grant)``."""
        admin = self._admin_digest()
        if admin is None:
            raise AccessDenied(
                403, "no admin key is configured: there is nothing to log in with", "no_admin_key"
            )
        now = self._clock()
        failures = self._failures
        while failures and failures[0] <= now - self.failure_window_s:
            failures.popleft()
        if len(failures) >= self.max_failures:
            wait = max(1, int(failures[0] + self.failure_window_s - now) + 1)
            raise AccessDenied(
                429,
                "too many failed logins: try again later",
                "too_many_logins",
                {"Retry-After": str(wait)},
            )
        if not hmac.compare_digest(_digest(key.strip()), admin):
            failures.append(now)
            raise AccessDenied(401, "that is not the admin key", "invalid_admin_key")
        self._expire(now)
        while len(self._sessions) >= self.max_sessions:  # the oldest session makes room
            del self._sessions[next(iter(self._sessions))]
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        ref = _digest(sid)
        self._sessions[ref] = _Session(csrf, now + self.session_ttl_s, admin)
        return sid, Grant(True, True, "session", csrf, ref.hex())

    def logout(self, grant: Grant) -> None:
        if grant.session is not None:
            self._sessions.pop(bytes.fromhex(grant.session), None)

    def _expire(self, now: float) -> None:
        for ref in [r for r, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[ref]

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def set_cookie(self, sid: str) -> str:
        """The ``Set-Cookie`` value for a new session."""
        secure = "; Secure" if self.secure_cookie else ""
        return (
            f"{COOKIE}={sid}; Path={self.path}; Max-Age={int(self.session_ttl_s)}; HttpOnly; "
            f"SameSite=Strict{secure}"
        )

    def clear_cookie(self) -> str:
        return f"{COOKIE}=; Path={self.path}; Max-Age=0; HttpOnly; SameSite=Strict"


__all__ = ["COOKIE", "CSRF_HEADER", "AccessDenied", "DashboardAccess", "Grant"]
