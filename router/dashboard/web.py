"""The dashboard over HTTP: the page, its files, its live event stream and its few POSTs.

Written against the gateway's HTTP server (router/gateway/http_server.py), so any process that
serves one (``swarm serve``; a provider node or the demo with :func:`serve_dashboard`) mounts it
with one line: ``if app.owns(request.path): return await app.handle(request)``.

Under ``path`` (``/dashboard`` by default):

- ``GET /dashboard/`` the page; ``GET /dashboard/static/...`` its files (shipped in the package,
  nothing from elsewhere);
- ``GET /dashboard/session``: what this browser may do (read, act, log in; its CSRF token);
- ``GET /dashboard/snapshot``: the whole state as JSON (for scripts: ``curl -H "Authorization:
  Bearer $ADMIN_KEY"``);
- ``GET /dashboard/events``: server-sent events, one ``data:`` line per batch of changes (a JSON
  list; the first is a full snapshot);
- ``POST /dashboard/login`` (``key`` as a form field or JSON), ``POST /dashboard/logout``;
- ``POST /dashboard/actions/NAME``: the process's actions (the demo's ``ask``), admin only.

While somebody watches, the probes (callables returning snapshot events: breaker states, spend,
reputation, earnings) are read every ``tick_s`` seconds; nobody watching, nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError

from ..gateway.http_server import HttpRequest, HttpResponse, HttpServer
from .access import AccessDenied, DashboardAccess
from .events import DashboardEvent
from .hub import DashboardHub, TooManyViewers

log = logging.getLogger("router.dashboard")

Probe = Callable[[], Iterable[DashboardEvent]]

_dumps = json.dumps
_JSON = "application/json"
_COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_NO_STORE = {**_COMMON, "Cache-Control": "no-store"}
#: The page runs only its own files: no inline script or style, no other origin.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
#: The files the page may load, by their path under static/.
STATIC_FILES = (
    "index.html",
    "dashboard.css",
    "dashboard.js",
    "vendor/uPlot.iife.min.js",
    "vendor/uPlot.min.css",
    "vendor/LICENSE.uPlot.txt",
)
_MAX_LOGIN_BODY = 4096


class ActionError(Exception):
    """An action that cannot be done as asked: answered with ``status`` and the message."""

    def __init__(self, status: int, message: str, code: str = "action_failed") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Action:
    """A state-changing POST the page offers (admin only). ``body``: the pydantic model of its
    JSON body (forbid extra fields in it); ``run`` gets the parsed body and returns the JSON
    answer, or raises :class:`ActionError`."""

    body: type[BaseModel]
    run: Callable[[Any], Awaitable[dict[str, Any]]]
    label: str


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str
    etag: str


_static: dict[str, _File] | None = None


def static_files() -> dict[str, _File]:
    """The page's files, read once from the package."""
    global _static
    if _static is None:
        root = resources.files("router.dashboard") / "static"
        files = {}
        for name in STATIC_FILES:
            body = (root / name).read_bytes()
            ext = name[name.rfind(".") :]
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            files[name] = _File(body, _TYPES.get(ext, "application/octet-stream"), etag)
        _static = files
    return _static


def _error(
    status: int, message: str, code: str, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return HttpResponse(
        _dumps(body).encode(), status, {"Content-Type": _JSON, **_NO_STORE, **(headers or {})}
    )


def _ok(obj: Any, headers: Mapping[str, str] | None = None) -> HttpResponse:
    return HttpResponse(
        _dumps(obj).encode(), 200, {"Content-Type": _JSON, **_NO_STORE, **(headers or {})}
    )


class DashboardApp:
    """The dashboard's HTTP handlers for one hub (see the module's docstring)."""

    def __init__(
        self,
        hub: DashboardHub,
        access: DashboardAccess,
        *,
        path: str = "/dashboard",
        probes: Iterable[Probe] = (),
        actions: Mapping[str, Action] | None = None,
        tick_s: float = 1.0,
        heartbeat_s: float = 15.0,
        min_interval_s: float = 0.2,
    ) -> None:
        if not path.startswith("/") or path.endswith("/"):
            raise ValueError(f"path must start with '/' and not end with one, not {path!r}")
        if not tick_s > 0 or not heartbeat_s > 0 or not min_interval_s >= 0:
            raise ValueError("tick_s and heartbeat_s must be positive, min_interval_s >= 0")
        self.hub = hub
        self.access = access
        self.path = path
        self.probes = list(probes)
        self.actions = dict(actions or {})
        self.tick_s = tick_s
        self.heartbeat_s = heartbeat_s
        self.min_interval_s = min_interval_s
        self.files = static_files()
        self._ticker: asyncio.Task[None] | None = None
        self._wakes: set[asyncio.Event] = set()
        self._streams: set[asyncio.Task[Any]] = set()
        self._failing: set[int] = set()
        self.closing = False

    @property
    def streams(self) -> list[asyncio.Task[Any]]:
        """The tasks serving event streams now (each ends when its viewer leaves)."""
        return list(self._streams)

    def owns(self, path: str) -> bool:
        p = self.path
        return path == p or (path.startswith(p) and path[len(p)] == "/")

    # --- dispatch --------------------------------------------------------------------------------

    async def handle(self, request: HttpRequest) -> HttpResponse | None:
        """Answer a request whose path :meth:`owns`."""
        rest = request.path[len(self.path) :]
        method = request.method
        get = method in ("GET", "HEAD")
        try:
            if rest == "":
                if not get:
                    return self._not_allowed("GET")
                return HttpResponse(b"", 308, {"Location": self.path + "/", **_COMMON})
            if rest == "/" or rest == "/index.html":
                return self._file("index.html", request) if get else self._not_allowed("GET")
            if rest.startswith("/static/"):
                if not get:
                    return self._not_allowed("GET")
                return self._file(rest[len("/static/") :], request)
            if rest == "/session":
                return self._session(request) if get else self._not_allowed("GET")
            if rest == "/snapshot":
                return self._snapshot(request) if get else self._not_allowed("GET")
            if rest == "/events":  # GET only: a HEAD would hold a stream open for nothing
                if method != "GET":
                    return self._not_allowed("GET")
                return await self._events(request)
            if rest == "/login":
                return self._login(request) if method == "POST" else self._not_allowed("POST")
            if rest == "/logout":
                return self._logout(request) if method == "POST" else self._not_allowed("POST")
            if rest.startswith("/actions/"):
                if method != "POST":
                    return self._not_allowed("POST")
                return await self._action(request, rest[len("/actions/") :])
        except AccessDenied as exc:
            return _error(exc.status, exc.message, exc.code, exc.headers)
        return _error(404, f"no dashboard page {method} {request.path}", "unknown_url")

    def _not_allowed(self, allow: str) -> HttpResponse:
        return _error(405, f"use {allow} here", "method_not_allowed", {"Allow": allow})

    # --- page and files --------------------------------------------------------------------------

    def _file(self, name: str, request: HttpRequest) -> HttpResponse:
        f = self.files.get(name)
        if f is None:
            return _error(404, f"no file {name!r}", "unknown_url")
        headers = {**_COMMON, "Cache-Control": "no-cache", "ETag": f.etag}
        if name.endswith(".html"):
            headers["Content-Security-Policy"] = _CSP
            headers["X-Frame-Options"] = "DENY"
        if request.headers.get("if-none-match") == f.etag:
            return HttpResponse(b"", 304, headers)
        headers["Content-Type"] = f.content_type
        return HttpResponse(f.body, 200, headers)

    # --- reading ---------------------------------------------------------------------------------

    def _session(self, request: HttpRequest) -> HttpResponse:
        grant = self.access.grant(request.headers)
        return _ok(
            {
                "title": self.hub.title,
                "required": self.access.required,
                "login": self.access.has_admin_key,
                "read": grant.read,
                "act": grant.act,
                "via": grant.via,
                "csrf": grant.csrf,
                "actions": [{"name": n, "label": a.label} for n, a in self.actions.items()],
            }
        )

    def _snapshot(self, request: HttpRequest) -> HttpResponse:
        grant = self.access.grant(request.headers)
        self.access.need_read(grant)
        self.refresh()
        return _ok(self.hub.snapshot())

    def refresh(self) -> None:
        """Read every probe into the hub now. A failing probe is logged (once until it works
        again) and skipped: the page shows the rest."""
        for i, probe in enumerate(self.probes):
            try:
                self.hub.apply_all(probe())
            except Exception:
                if i not in self._failing:
                    self._failing.add(i)
                    log.exception("dashboard probe %r failed", probe)
            else:
                self._failing.discard(i)

    async def _events(self, request: HttpRequest) -> HttpResponse | None:
        grant = self.access.grant(request.headers)
        self.access.need_read(grant)
        if self.closing:
            return _error(503, "the dashboard is shutting down", "shutting_down")
        wake = asyncio.Event()
        try:
            viewer = self.hub.join(wake.set)
        except TooManyViewers as exc:
            return _error(503, str(exc), "too_many_viewers", {"Retry-After": "10"})
        self._wakes.add(wake)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        loop = asyncio.get_running_loop()
        try:
            self.refresh()
            self._start_ticker()
            headers = {
                "Content-Type": "text/event-stream; charset=utf-8",
                "X-Accel-Buffering": "no",
                **_NO_STORE,
            }
            stream = await request.stream(200, headers)
            await stream.write(b"retry: 2000\n\n")
            last = 0.0
            while not self.closing:
                wake.clear()
                messages = self.hub.take(viewer)
                if messages:
                    await stream.write(b"data: " + _dumps(messages).encode() + b"\n\n")
                    last = loop.time()
                try:
                    async with asyncio.timeout(self.heartbeat_s):
                        await wake.wait()
                except TimeoutError:
                    await stream.write(b": ping\n\n")  # finds a client that went away
                    continue
                # Changes that come in a burst go out together, at most every min_interval_s.
                pause = last + self.min_interval_s - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
            await stream.write_eof()
        except ConnectionResetError:
            pass
        finally:
            self.hub.leave(viewer)
            self._wakes.discard(wake)
            if task is not None:
                self._streams.discard(task)
        return None

    def _start_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick_loop())

    async def _tick_loop(self) -> None:
        while not self.closing:
            await asyncio.sleep(self.tick_s)
            if not self.hub.live:
                break
            self.refresh()
            self.hub.tick()
        self._ticker = None

    # --- acting ----------------------------------------------------------------------------------

    def _login(self, request: HttpRequest) -> HttpResponse:
        self.access.same_origin(request.headers)
        key = self._login_key(request)
        sid, grant = self.access.login(key)
        return _ok(
            {"ok": True, "csrf": grant.csrf},
            {"Set-Cookie": self.access.set_cookie(sid)},
        )

    def _login_key(self, request: HttpRequest) -> str:
        body = request.body
        if len(body) > _MAX_LOGIN_BODY:
            raise AccessDenied(400, "the login body is too large", "bad_request")
        ctype = request.headers.get("content-type", "")
        try:
            text = body.decode()
            if ctype.startswith(_JSON):
                data = json.loads(text)
                key = data.get("key") if isinstance(data, dict) else None
            else:
                key = dict(parse_qsl(text)).get("key")
        except (UnicodeDecodeError, ValueError, RecursionError):
            key = None
        if not isinstance(key, str) or not key.strip():
            raise AccessDenied(400, "send the admin key as the field 'key'", "bad_request")
        return key

    def _logout(self, request: HttpRequest) -> HttpResponse:
        grant = self.access.grant(request.headers)
        self.access.need_act(grant, request.headers)
        self.access.logout(grant)
        return _ok({"ok": True}, {"Set-Cookie": self.access.clear_cookie()})

    async def _action(self, request: HttpRequest, name: str) -> HttpResponse:
        action = self.actions.get(name)
        if action is None:
            return _error(404, f"no action {name!r}", "unknown_action")
        grant = self.access.grant(request.headers)
        self.access.need_act(grant, request.headers)
        try:
            raw = json.loads(request.body.decode() or "null")
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _error(400, "the body must be a JSON object", "bad_request")
        try:
            body = action.body.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            return _error(400, f"{where}: {first.get('msg')}", "bad_request")
        try:
            result = await action.run(body)
        except ActionError as exc:
            return _error(exc.status, exc.message, exc.code)
        return _ok(result)

    # --- shutting down ---------------------------------------------------------------------------

    async def close(self, grace_s: float = 2.0) -> None:
        """End every event stream (each answer finishes cleanly) and the ticker."""
        self.closing = True
        for wake in list(self._wakes):
            wake.set()
        if self._streams:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await asyncio.gather(*list(self._streams), return_exceptions=True)
        ticker = self._ticker
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            self._ticker = None


async def serve_dashboard(app: DashboardApp, host: str, port: int) -> tuple[HttpServer, str]:
    """A server of its own for a process that serves no HTTP otherwise (a provider node):
    the dashboard at ``app.path``, ``/`` redirecting there. Returns the started server and the
    page's URL; stop it with ``await app.close()`` then ``await server.close()``."""

    async def root(request: HttpRequest) -> HttpResponse | None:
        if app.owns(request.path):
            return await app.handle(request)
        if request.path == "/" and request.method in ("GET", "HEAD"):
            return HttpResponse(b"", 308, {"Location": app.path + "/", **_COMMON})
        return _error(
            404, f"nothing at {request.path}; the dashboard is at {app.path}/", "unknown_url"
        )

    server = HttpServer(root, max_body_bytes=64 * 1024, max_connections=64)
    h, p = await server.start(host, port)
    shown = f"[{h}]" if ":" in h else h
    return server, f"http://{shown}:{p}{app.path}/"


__all__ = ["Action", "ActionError", "DashboardApp", "Probe", "serve_dashboard", "static_files"]
