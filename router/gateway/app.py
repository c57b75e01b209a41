"""The OpenAI-compatible HTTP gateway in front of an :class:`LmRouter`.

Endpoints: ``GET /healthz``, ``GET /v1/models`` (and ``/v1/models/{id}``),
``POST /v1/chat/completions``, ``POST /v1/completions``, ``POST /v1/embeddings``,
``GET /v1/usage``, ``GET /metrics``; the live dashboard under ``/dashboard/``
(router/dashboard, docs/dashboard.md).

The request path is kept short: a lean HTTP/1.1 server (:mod:`.http_server`, on httptools),
hand-written parsing, one ``json.dumps`` per answer, the model list pre-serialized after each
discovery round. Each answer carries
``x-swarm-backend``, ``x-swarm-route-reason`` and (non-streamed) ``x-swarm-cost-sats``.

Shutdown (:meth:`Gateway.stop`) stops listening, closes idle connections, answers requests that
still arrive with 503, waits for requests in flight (streams included) up to
``server.shutdown_timeout_s``, then closes connections and backends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote

from client.nostr.errors import BudgetExceeded, QuorumNotReached

from ..dashboard.gateway import gateway_dashboard, swarm_observer
from ..errors import (
    BackendError,
    BackendNotFound,
    CircuitBreakerOpen,
    InvalidRequest,
    PaidFailure,
)
from ..request import LmRequest, SwarmTerms
from ..retry import is_caller_error
from ..router import LmRouter, LmStream
from ..spend import Hold, SpendBook, usd_to_nanos
from ..state_db import StateUnavailable
from ..strategy import RoutingDecision
from ..types import LmResponse, LmUsage, SwarmOutcome, estimate_tokens, prompt_text
from .adapters import Served
from .admin import AdminApi
from .auth import KeyAccount, KeyStore, key_account
from .build import build_router
from .cache import Cached, ResponseCache, cache_key
from .config import SWARM_PREFIX, GatewayConfig, SwarmBackendConfig, SwarmSettings
from .deadlines import Deadlines
from .errors import ApiError, ConfigError, bad_request
from .errors_map import api_error
from .http_server import HttpRequest, HttpResponse, HttpServer, ResponseStream
from .key_db import KeyRecords
from .metrics import CONTENT_TYPE, GatewayMetrics
from .protocol import (
    OPENAI_FIELDS,
    SWARM_FIELDS,
    CompletionRequest,
    completion_json,
    embedding_json,
    model_list,
    parse_embedding_request,
    parse_request,
    usage_dict,
)
from .shared_limits import SharedCounters
from .sse import DONE, STREAM_HEADERS, ChunkEncoder, error_event
from .swarm import ServedSwarm

if TYPE_CHECKING:
    from .redis_link import RedisLink
    from .shared_breakers import SharedBreakers
    from .shared_cache import SharedCache

log = logging.getLogger("router.gateway")

# A payment the spend book authorized that the payer never recorded is released after this long
# (the payer records before it pays, so such a payment never reached the wallet).
_NO_RECORD_GRACE_S = 120.0
_SETTLE_RETRY_S = 1.0  # how often settlements that wait for the state store are tried again

_JSON = "application/json"
_dumps = json.dumps
_loads = json.loads
_perf = time.perf_counter
_CHAT = "/v1/chat/completions"
_TEXT = "/v1/completions"
_EMBED = "/v1/embeddings"

_KNOWN = {
    "/healthz": "GET",
    "/health": "GET",
    "/v1/models": "GET",
    _CHAT: "POST",
    _TEXT: "POST",
    _EMBED: "POST",
    "/v1/usage": "GET",
    "/metrics": "GET",
}

Handler = Callable[[HttpRequest], Coroutine[Any, Any, HttpResponse | None]]
_MODEL_PREFIX = "/v1/models/"


def _header_safe(text: str) -> str:
    """Header values must be one line of latin-1; routing reasons are free text."""
    if text.isascii() and "\n" not in text and "\r" not in text:
        return text
    return text.encode("ascii", "replace").decode().replace("\r", " ").replace("\n", " ")


def _json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    return _json_bytes(_dumps(obj).encode(), status, headers)


def _json_bytes(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    all_headers = {"Content-Type": _JSON}
    if headers:
        all_headers.update(headers)
    return HttpResponse(body, status, all_headers)


def error_response(err: ApiError) -> HttpResponse:
    return _json_response(err.body(), err.status, err.headers)


class Gateway:
    """The gateway for one configuration. Use as an async context manager or call
    :meth:`start`/:meth:`stop`::

        async with Gateway(load_config("config.yaml")) as gw:
            print(gw.url)   # http://127.0.0.1:PORT, OpenAI clients use gw.url + "/v1"
    """

    def __init__(self, config: GatewayConfig, *, router: LmRouter | None = None) -> None:
        self.config = config
        self.router = router if router is not None else build_router(config)
        #: Durable spend: keys, the swarm budget, reservations, payments of unknown outcome.
        self.book = SpendBook(config.state.target())
        #: Redis (``state.redis``): key limits, breakers and the response cache shared by
        #: every instance; without it (or while it is away) they are this process's.
        self.redis: RedisLink | None = _redis_link(config.state.redis)
        self.shared_limits = SharedCounters(self.redis) if self.redis is not None else None
        self.shared_breakers: SharedBreakers | None = None
        if self.redis is not None:
            from .shared_breakers import SharedBreakers

            self.shared_breakers = SharedBreakers(self.redis)
            self.shared_breakers.attach(self.router)
        self.keys = KeyStore(config.keys, self.book, self.shared_limits)
        self._swarm_accounts: dict[str, str] = {}
        self._ensure_swarm_accounts(config)
        self._max_tokens = config.server.max_tokens
        #: The admin API (config ``admin:``), with the keys it made loaded into ``keys``.
        self.admin: AdminApi | None = None
        self._key_records: KeyRecords | None = None
        if config.admin is not None and config.admin.key:
            self._key_records = KeyRecords(config.state.target())
            self.admin = AdminApi(
                config.admin.key, self.keys, self._key_records, {k.name for k in config.keys}
            )
            self.keys.require_keys()
        self._model_fallbacks: dict[str, list[str]] = config.model_fallbacks()
        self.cache: ResponseCache | None = (
            ResponseCache(config.cache.ttl_s, config.cache.max_entries) if config.cache else None
        )
        self.shared_cache: SharedCache | None = None
        if self.redis is not None and config.cache is not None:
            from .shared_cache import SharedCache

            self.shared_cache = SharedCache(
                self.redis, config.cache.ttl_s, config.cache.max_entries
            )
        self._resolve_task: asyncio.Task[None] | None = None
        #: Settlements waiting for the state store (it was away when their requests ended).
        self._unsettled: list[tuple[Hold, bool, LmUsage | None]] = []
        self._settle_task: asyncio.Task[None] | None = None
        self.aliases = dict(config.aliases)
        srv = config.server
        self._max_body = srv.max_body_bytes
        self._default_max_tokens = srv.default_max_tokens
        self._request_timeout = config.resilience.request_timeout_s
        swarms = [b for b in config.all_backends() if isinstance(b, SwarmBackendConfig)]
        #: Limits and defaults for swarm requests (the first swarm backend's settings).
        self.swarm: SwarmSettings | None = swarms[0] if swarms else None
        self._models: list[tuple[str, str]] = []
        self._models_body = b""
        self._models_index: dict[str, bytes] = {}
        self.metrics = GatewayMetrics(
            self.router.metrics, lambda: len(self._models), lambda: self._in_flight
        )
        self._deadlines = Deadlines(tick_s=min(1.0, self._request_timeout / 10))
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Config generations (SIGHUP reloads): requests count against the one they started
        # in, so a replaced router is closed only after its last request.
        self._generation = 0
        self._gen_in_flight: dict[int, int] = {}
        self._retired: dict[int, asyncio.Event] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self.reloads = 0
        self._cors = frozenset(config.server.cors_origins)
        self.closing = False
        #: Set by :meth:`stop` once the listening socket is closed (in-flight requests drain).
        self.draining = asyncio.Event()
        self.refreshes = 0
        self._refreshed = asyncio.Condition()
        self._refresh_task: asyncio.Task[None] | None = None
        self._server: HttpServer | None = None
        self.url = ""
        self._routes: dict[str, tuple[str, Handler]] = {
            "/healthz": ("GET", self._healthz),
            "/health": ("GET", self._healthz),
            "/v1/models": ("GET", self._list_models),
            _CHAT: ("POST", self._chat),
            _TEXT: ("POST", self._text),
            _EMBED: ("POST", self._embed),
            "/v1/usage": ("GET", self._usage),
            "/metrics": ("GET", self._metrics),
        }
        self._rebuild_models()
        #: The live dashboard at /dashboard (docs/dashboard.md): admin only once keys exist.
        self.dashboard = gateway_dashboard(self, swarm=self.swarm is not None)
        self.dashboard_hub = self.dashboard.hub

    # --- application -----------------------------------------------------------------------

    async def app(self, request: HttpRequest) -> HttpResponse | None:
        """The whole application: one request in, its answer out (None once streamed)."""
        if self._cors and "origin" in request.headers:
            return await self._with_cors(request)
        return await self._app(request)

    async def _app(self, request: HttpRequest) -> HttpResponse | None:
        path = request.path
        method = request.method
        route = self._routes.get(path)
        if route is not None and (method == route[0] or (method == "HEAD" and route[0] == "GET")):
            return await route[1](request)
        if path.startswith(_MODEL_PREFIX) and method in ("GET", "HEAD"):
            return await self._get_model(request)
        if self.admin is not None and path.startswith("/admin/"):
            return await self.admin.handle(request)
        if path.startswith("/dashboard") and self.dashboard.owns(path):
            return await self.dashboard.handle(request)
        return self._unknown(request)

    # --- CORS ----------------------------------------------------------------------------------

    def cors_headers(self, request: HttpRequest) -> dict[str, str]:
        """CORS answer headers for a request from an allowed origin (else none)."""
        origin = request.headers.get("origin")
        if not origin or not (origin in self._cors or "*" in self._cors):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Vary": "Origin",
            "Access-Control-Expose-Headers": _EXPOSED,
        }

    async def _with_cors(self, request: HttpRequest) -> HttpResponse | None:
        cors = self.cors_headers(request)
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            if not cors:
                return error_response(
                    ApiError(403, "This origin may not call the gateway", code="cors_refused")
                )
            asked = request.headers.get("access-control-request-headers")
            return HttpResponse(
                b"",
                204,
                {
                    **cors,
                    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
                    "Access-Control-Allow-Headers": asked or "authorization, content-type",
                    "Access-Control-Max-Age": "600",
                },
            )
        resp = await self._app(request)
        if resp is not None and cors:
            if resp.headers is None:
                resp.headers = {}
            resp.headers.update(cors)
        return resp

    # --- reloading ---------------------------------------------------------------------------

    async def reload(self, config: GatewayConfig) -> None:
        """Take a new configuration without dropping requests in flight: the new router's
        backends connect first; then requests go to it, and the old router closes after its
        last request. Raises (ConfigError, OSError, ...) and keeps the running configuration
        when the new one cannot be built. The state file and the listening socket stay."""
        if self.closing:
            raise RuntimeError("the gateway is shutting down")
        if config.state.target() != self.config.state.target():
            raise ConfigError("state.url", "a different state file needs a restart")
        fixed = [
            f
            for f in ("host", "port", "max_body_bytes", "max_header_bytes", "max_connections")
            if getattr(config.server, f) != getattr(self.config.server, f)
        ]
        if fixed:
            log.warning("reload: server.%s take effect on restart only", ", server.".join(fixed))
        router = build_router(config)
        try:
            for backend in router.backends.values():
                if isinstance(backend, Served):
                    await backend.open()
        except BaseException:
            await router.close()
            raise
        keys = KeyStore(config.keys, self.book, self.shared_limits)
        for name, acct in keys.accounts.items():
            old = self.keys.accounts.get(name)
            if old is not None and old.gate.limits == acct.gate.limits:
                acct.gate = old.gate  # limits unchanged: its minute and slots go on
        admin = None
        if config.admin is not None and config.admin.key:
            if self._key_records is None:
                self._key_records = KeyRecords(config.state.target())
            admin = AdminApi(
                config.admin.key, keys, self._key_records, {k.name for k in config.keys}
            )
            keys.require_keys()
        self._ensure_swarm_accounts(config)
        old_router, old_gen = self.router, self._generation
        # The swap: no await from here on, so a request sees the old or the new, not a mix.
        self.config = config
        self.router = router
        if self.shared_breakers is not None:
            self.shared_breakers.attach(router)
        self.keys = keys
        self.admin = admin
        self.aliases = dict(config.aliases)
        self._model_fallbacks = config.model_fallbacks()
        self._max_tokens = config.server.max_tokens
        self._default_max_tokens = config.server.default_max_tokens
        self._request_timeout = config.resilience.request_timeout_s
        self._cors = frozenset(config.server.cors_origins)
        swarms = [b for b in config.all_backends() if isinstance(b, SwarmBackendConfig)]
        self.swarm = swarms[0] if swarms else None
        self.metrics.use_router(router.metrics)
        self._generation += 1
        self._rebuild_models()
        self.reloads += 1
        done = asyncio.Event()
        if not self._gen_in_flight.get(old_gen):
            done.set()
        self._retired[old_gen] = done
        self._spawn_retire(old_router, old_gen, done)
        log.info("configuration reloaded (generation %d)", self._generation)

    def _spawn_retire(self, router: LmRouter, gen: int, done: asyncio.Event) -> None:
        async def retire() -> None:
            try:
                async with asyncio.timeout(self.config.server.shutdown_timeout_s):
                    await done.wait()
            except TimeoutError:
                log.warning("reload: closing the old backends with requests still on them")
            self._retired.pop(gen, None)
            await router.close()

        task = asyncio.create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _unknown(self, request: HttpRequest) -> HttpResponse:
        allowed = _KNOWN.get(request.path)
        if allowed is not None:
            return error_response(
                ApiError(
                    405,
                    f"{request.method} is not allowed on {request.path}; use {allowed}",
                    code="method_not_allowed",
                    headers={"Allow": allowed},
                )
            )
        return error_response(
            ApiError(404, f"No endpoint {request.method} {request.path}", code="unknown_url")
        )

    async def start(self, host: str | None = None, port: int | None = None) -> str:
        """Discover models, start serving and the discovery loop; returns the base URL."""
        srv = self.config.server
        await self.open()
        self._server = HttpServer(
            self.app,
            max_body_bytes=self._max_body,
            max_head_bytes=srv.max_header_bytes,
            keepalive_s=srv.keepalive_timeout_s,
            max_connections=srv.max_connections,
        )
        h, bound_port = await self._server.start(
            host or srv.host, srv.port if port is None else port
        )
        self.url = f"http://{'[' + h + ']' if ':' in h else h}:{bound_port}"
        log.info("gateway listening on %s", self.url)
        return self.url

    async def open(self) -> None:
        """Everything :meth:`start` does but listening (an ASGI server listens instead):
        recover reservations, open backends, discover models, start the background loops."""
        recovered = self.book.recover(self._stale_hold_s() if self.book.shared else None)
        if recovered:
            log.info("released %d reservation(s) left by an earlier run", recovered)
        for backend in self.router.backends.values():
            if isinstance(backend, Served):
                await backend.open()
        await self.resolve_pending()
        if self.book.pending() and self.swarm is not None:
            self._resolve_task = asyncio.create_task(self._resolve_loop())
        await self.refresh_models()
        if self.config.refresh_interval > 0:
            self._refresh_task = asyncio.create_task(self._refresh_loop())
        if self.shared_breakers is not None:
            await self.shared_breakers.start()
        self._deadlines.start()

    async def stop(self, grace_s: float | None = None) -> bool:
        """Stop gracefully: no new connections, in-flight requests finish (up to ``grace_s``,
        default ``server.shutdown_timeout_s``). Returns False if some had to be cut off."""
        self.closing = True
        wait = self.config.server.shutdown_timeout_s if grace_s is None else grace_s
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            await asyncio.gather(self._refresh_task, return_exceptions=True)
            self._refresh_task = None
        if self._resolve_task is not None:
            self._resolve_task.cancel()
            await asyncio.gather(self._resolve_task, return_exceptions=True)
            self._resolve_task = None
        if self._settle_task is not None:
            self._settle_task.cancel()
            await asyncio.gather(self._settle_task, return_exceptions=True)
        server = self._server
        if server is not None:
            await server.close()
        await self.dashboard.close()  # its event streams end; they hold no request in flight
        self.draining.set()
        finished = True
        if self._in_flight:
            log.info("waiting for %d request(s) in flight", self._in_flight)
            try:
                async with asyncio.timeout(wait):
                    await self._idle.wait()
            except TimeoutError:
                finished = False
                log.warning("%d request(s) still running after %.1f s", self._in_flight, wait)
        if server is not None:
            server.abort_all()
            self._server = None
        await self._deadlines.stop()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        await self.router.close()  # swarm clients finish payments in progress first
        if not self.book.closed:
            try:
                self._settle_waiting()
                await self.resolve_pending()
            except StateUnavailable as exc:
                log.error("stopping with the state store away: %s", exc)
            if self._unsettled:
                log.error(
                    "%d request(s) not settled (their holds stay reserved until a gateway "
                    "recovers them): %s",
                    len(self._unsettled),
                    ", ".join(str(hold.id) for hold, _, _ in self._unsettled),
                )
            if not self._in_flight:  # requests cut off still settle into it as they unwind
                self.book.close()
        if self._key_records is not None:
            self._key_records.close()
            self._key_records = None
        if self.shared_breakers is not None:
            await self.shared_breakers.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        return finished

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- payments of unknown outcome -------------------------------------------------------

    def _ensure_swarm_accounts(self, config: GatewayConfig) -> None:
        """One spend account per swarm backend, its budget from the config."""
        for b in config.all_backends():
            if isinstance(b, SwarmBackendConfig):
                account = swarm_account(b.backend_name)
                self._swarm_accounts[b.backend_name] = account
                self.book.ensure(
                    account, budget_msats=None if b.budget_sats is None else b.budget_sats * 1000
                )

    def _stale_hold_s(self) -> float:
        """How old a hold must be before no live request can own it: the whole-request
        deadline, plus the time a payment may run on after it."""
        wallet = self.swarm.wallet_timeout_s if self.swarm is not None else 0.0
        return self._request_timeout + 2 * wallet + 60.0

    async def resolve_pending(self) -> int:
        """Look up every payment the spend book holds as pending (its outcome unknown: the
        wallet timed out, or a crash came between paying and recording) and charge or release
        it. Returns how many are still pending. Never raises: a wallet that is still away
        leaves them pending, counted against every budget."""
        pending = self.book.pending()
        if not pending:
            return 0
        payers = [
            b.client.payer
            for b in self.router.backends.values()
            if isinstance(b, ServedSwarm) and getattr(b.client, "payer", None) is not None
        ]
        for payer in payers:
            try:
                await payer.resolve_open()
            except Exception as exc:  # the wallet is away: try again on the next round
                log.info("payments of unknown outcome not resolved yet: %s", exc)
        now = time.time()
        for p in pending:
            recs = [r for r in (payer.ledger.get(p.payment_hash) for payer in payers) if r]
            rec = recs[0] if recs else None
            if rec is not None and rec.state in ("paid", "failed"):
                self.book.resolve(p.payment_hash, rec.state == "paid")
                log.info(
                    "payment %s of %d msats resolved: %s", p.payment_hash[:16], p.msats, rec.state
                )
            elif rec is None and payers and now - p.created_at > _NO_RECORD_GRACE_S:
                if not self.book.shared:
                    # Authorized but never recorded by our payer: the process stopped before
                    # it asked the wallet (the payer records before it pays), so nothing left.
                    self.book.resolve(p.payment_hash, False)
                else:
                    # Another gateway's payment (its own ledger holds the record): only the
                    # wallet may say what happened to it.
                    await self._ask_wallet(payers[0], p.payment_hash, p.msats)
        return len(self.book.pending())

    async def _ask_wallet(self, payer: Any, payment_hash: str, msats: int) -> None:
        from client.nostr.errors import InvoiceNotFound

        try:
            tx = await payer.wallet.lookup_invoice(payment_hash)
        except InvoiceNotFound:
            # The wallet never saw it, long after it was authorized: it was never sent.
            self.book.resolve(payment_hash, False)
            return
        except Exception as exc:  # still away: stays pending, counted against budgets
            log.info("payment %s not resolved yet: %s", payment_hash[:16], exc)
            return
        if tx.settled:
            self.book.resolve(payment_hash, True)
        elif tx.state in ("failed", "expired"):
            self.book.resolve(payment_hash, False)
        log.info("payment %s of %d msats looked up: %s", payment_hash[:16], msats, tx.state)

    async def _resolve_loop(self) -> None:
        assert self.swarm is not None
        interval = self.swarm.resolve_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                left = await self.resolve_pending()
            except StateUnavailable as exc:  # the payments wait in the store: ask again
                log.info("payments of unknown outcome not resolved yet: %s", exc)
                continue
            if not left:
                self._resolve_task = None
                return

    def _watch_pending(self) -> None:
        """A request left a payment of unknown outcome: make sure someone looks it up."""
        if self._resolve_task is None and not self.closing and self.swarm is not None:
            self._resolve_task = asyncio.create_task(self._resolve_loop())

    # --- model discovery -------------------------------------------------------------------

    async def refresh_models(self) -> list[str]:
        """Ask the backends which models they serve now and rebuild ``/v1/models``."""
        try:
            await self.router.refresh_models()
        except Exception:  # a discovery round must never take the gateway down
            log.exception("model discovery failed")
        self._rebuild_models()
        async with self._refreshed:
            self.refreshes += 1
            self._refreshed.notify_all()
        return [m for m, _ in self._models]

    async def wait_refreshes(self, n: int) -> None:
        """Wait until ``n`` discovery rounds have completed (bound it with asyncio.wait_for)."""
        async with self._refreshed:
            await self._refreshed.wait_for(lambda: self.refreshes >= n)

    async def _refresh_loop(self) -> None:
        interval = self.config.refresh_interval
        while True:
            await asyncio.sleep(interval)
            await self.refresh_models()

    def _rebuild_models(self) -> None:
        owners: dict[str, str] = {}
        for name, backend in self.router.backends.items():
            for m in backend.supported_models():
                owners.setdefault(m, name)
        for model, targets in self.config.route_targets().items():
            if not any(ch in model for ch in "*?["):
                owners.setdefault(model, targets[0])
        for alias, target in self.aliases.items():
            owners.setdefault(alias, owners.get(target, "gateway"))
        if self.swarm is not None:
            for m in self.swarm.models:
                owners.setdefault(SWARM_PREFIX + m, "swarm")
        self._models = sorted(owners.items())
        created = int(time.time())
        self._models_body = _dumps(model_list(self._models, created)).encode()
        self._models_index = {
            m: _dumps({"id": m, "object": "model", "created": created, "owned_by": o}).encode()
            for m, o in self._models
        }

    @property
    def models(self) -> list[str]:
        return [m for m, _ in self._models]

    # --- small endpoints ---------------------------------------------------------------------

    async def _healthz(self, request: HttpRequest) -> HttpResponse:
        if self.closing:
            return _json_response({"status": "shutting_down"}, 503)
        if request.query.get("deep"):
            health = await self.router.health_check()
            ok = any(health.values())
            return _json_response(
                {"status": "ok" if ok else "unhealthy", "backends": health}, 200 if ok else 503
            )
        return _json_response({"status": "ok", "models": len(self._models)})

    def _auth(self, request: HttpRequest) -> KeyAccount | None:
        return self.keys.authenticate(request.headers.get("authorization"))

    async def _list_models(self, request: HttpRequest) -> HttpResponse:
        try:
            self._auth(request)
        except ApiError as err:
            return error_response(err)
        return _json_bytes(self._models_body)

    async def _get_model(self, request: HttpRequest) -> HttpResponse:
        try:
            self._auth(request)
        except ApiError as err:
            return error_response(err)
        model = unquote(request.path[len(_MODEL_PREFIX) :])
        body = self._models_index.get(model)
        if body is None:
            return error_response(
                ApiError(
                    404,
                    f"The model '{model}' does not exist",
                    param="model",
                    code="model_not_found",
                )
            )
        return _json_bytes(body)

    async def _usage(self, request: HttpRequest) -> HttpResponse:
        try:
            acct = self._auth(request)
        except ApiError as err:
            return error_response(err)
        rep = self.router.usage_report()

        def stats(s: Any) -> dict[str, Any]:
            return {
                "call_count": s.call_count,
                "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens,
                "total_tokens": s.total_tokens,
                "cost_usd": s.cost_usd,
                "cost_sats": s.cost_sats,
            }

        body: dict[str, Any] = {
            "object": "usage_report",
            "total_calls": rep.total_calls,
            "total_prompt_tokens": rep.total_prompt_tokens,
            "total_completion_tokens": rep.total_completion_tokens,
            "total_tokens": rep.total_tokens,
            "total_cost_usd": rep.total_cost_usd,
            "total_cost_sats": rep.total_cost_sats,
            "by_model": {m: stats(s) for m, s in rep.by_model.items()},
            "by_backend": {b: stats(s) for b, s in rep.by_backend.items()},
        }
        if acct is not None:
            body["key"] = acct.report()
        elif self.keys.enabled:  # pragma: no cover - authenticate() returns an account then
            pass
        else:
            body["keys"] = self.keys.report()
        swarm = {}
        for name, b in self.router.backends.items():
            if not isinstance(b, ServedSwarm):
                continue
            st = self.book.status(self._swarm_accounts.get(name, swarm_account(name)))
            remaining = st.remaining_msats
            swarm[name] = {
                "spent_sats": st.spent_msats // 1000,
                "spent_msats": st.spent_msats,
                "pending_sats": -(-st.pending_msats // 1000),
                "reserved_sats": -(-st.reserved_msats // 1000),
                "budget_sats": None if st.budget_msats is None else st.budget_msats // 1000,
                "remaining_sats": None if remaining is None else remaining // 1000,
            }
        if swarm:
            body["swarm"] = swarm
        body["state"] = self._state_totals()
        return _json_response(body)

    def _state_totals(self) -> dict[str, Any]:
        """Totals from the state store: with a shared store (PostgreSQL) every instance gives
        the same figures, for every request any of them served."""
        requests = spent = pending = usd = 0
        for _who, _model, n, msats, pend, nanos in self.book.spend_by():
            requests += n
            spent += msats
            pending += pend
            usd += nanos
        return {
            "shared": self.book.shared,
            "requests": requests,
            "spent_msats": spent,
            "pending_msats": pending,
            "spent_usd": usd / 1e9,
        }

    async def _metrics(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(self.metrics.render(), 200, {"Content-Type": CONTENT_TYPE})

    # --- completions -------------------------------------------------------------------------

    async def _chat(self, request: HttpRequest) -> HttpResponse | None:
        return await self._completion(request, True, _CHAT)

    async def _text(self, request: HttpRequest) -> HttpResponse | None:
        return await self._completion(request, False, _TEXT)

    async def _embed(self, request: HttpRequest) -> HttpResponse | None:
        return await self._completion(request, False, _EMBED)

    def _read_json(self, request: HttpRequest) -> Any:
        # The server enforced server.max_body_bytes (413) while reading the body.
        raw = request.body
        if not raw:
            raise bad_request("The request body is empty; send a JSON object")
        try:
            return _loads(raw.decode())  # JSON on the wire is UTF-8 (RFC 8259); skips sniffing
        except ValueError as exc:
            raise bad_request(f"The request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise bad_request("The request body's JSON is nested too deeply") from None

    def _admit(
        self, req: CompletionRequest, model: str, acct: KeyAccount | None
    ) -> tuple[Hold | None, LmRequest, bool]:
        """Check the request against the operator's limits and reserve the most it may cost
        on every budget it is charged to (its key; the swarm's budget). Returns the hold
        (None when no budget applies and nothing may be paid), the request for the router
        (with its swarm terms, for a swarm model), and whether it is a swarm request."""
        if req.max_tokens > self._max_tokens:
            raise bad_request(
                f"max_tokens {req.max_tokens} is above the gateway's limit {self._max_tokens}",
                "max_tokens",
            )
        limit = self.router.max_tokens_limit(model)
        if limit is not None and req.max_tokens > limit:
            raise bad_request(
                f"max_tokens {req.max_tokens} is above the limit {limit} of the backends "
                f"serving {model!r}",
                "max_tokens",
            )
        lm_request = req.lm_request(model)  # checked before anything is reserved
        accounts = [key_account(acct.name)] if acct is not None else []
        label = f"{acct.name if acct else '-'} {model}"[:200]
        s = self.swarm
        if s is not None and model.startswith(SWARM_PREFIX):
            for key in req.passthrough:
                if key not in OPENAI_FIELDS:
                    # a misspelled swarm term must not become a parameter nobody reads
                    raise bad_request(
                        f"unknown parameter {key!r} for swarm model {model!r} (the swarm's "
                        f"own are {', '.join(SWARM_FIELDS)})",
                        key,
                    )
            quorum = req.quorum if req.quorum is not None else s.quorum
            if quorum > s.max_quorum:
                raise bad_request(
                    f"quorum {quorum} is above the gateway's limit {s.max_quorum} "
                    f"(max_quorum: {s.max_quorum}, max_bid_sats: {s.bid_limit_sats})",
                    "quorum",
                )
            bid = req.bid_sats if req.bid_sats is not None else s.bid_sats
            if bid > s.bid_limit_sats:
                raise bad_request(
                    f"bid_sats {bid} is above the gateway's limit {s.bid_limit_sats} "
                    f"(max_bid_sats: {s.bid_limit_sats}, max_quorum: {s.max_quorum})",
                    "bid_sats",
                )
            accounts.extend(self._swarm_accounts.values())
            usd = 0
            if self.config.usd_per_sat is not None:
                usd = usd_to_nanos(quorum * bid * self.config.usd_per_sat) or 0
            hold, bid = self.keys.reserve(
                accounts,
                bid_sats=bid,
                quorum=quorum,
                usd_nanos=usd,
                label=label,
                who=acct.name if acct else "",
                model=model,
            )
            hub = self.dashboard_hub
            terms = SwarmTerms(
                quorum=quorum,
                bid_msats=bid * 1000,
                max_sats=bid * quorum,
                comparator=req.comparator,
                hold=hold,
                # The job on the dashboard, only while somebody watches it.
                observer=swarm_observer(hub, model, quorum, req.prompt) if hub.live else None,
            )
            return hold, replace(lm_request, swarm=terms), True
        if req.comparator:
            raise bad_request("comparator applies to swarm models (swarm/...) only", "comparator")
        if not accounts:
            return None, lm_request, False
        prompt_tokens = _prompt_bytes(req.prompt)
        tools = req.passthrough.get("tools")
        if tools:  # the upstream's template puts the tool definitions into the prompt
            prompt_tokens += len(str(tools).encode())
        msats, usd_most = self.router.max_cost(model, prompt_tokens, req.max_tokens)
        hold, _ = self.keys.reserve(
            accounts,
            msats=msats,
            usd_nanos=usd_to_nanos(usd_most) or 0,
            label=label,
            who=acct.name if acct else "",
            model=model,
        )
        return hold, lm_request, False

    def _settle(self, hold: Hold | None, swarm: bool, usage: LmUsage | None) -> None:
        """Charge what the request cost and free the rest of its hold. Swarm payments were
        charged one by one as the wallet paid them; payments of unknown outcome stay held.
        While the state store is away the settlement waits in this process and is made when
        it is back (the hold stays in the store meanwhile, counted against the budgets)."""
        if hold is None:
            return
        try:
            self._charge(hold, swarm, usage, again=False)
            if swarm and hold.pending_msats:
                self._watch_pending()
        except StateUnavailable as exc:
            log.warning("settling hold %s when the state store is back: %s", hold.id, exc)
            # A fresh handle: the failed try may have marked this one closed.
            self._unsettled.append(
                (Hold(hold.book, hold.id, hold.accounts, hold.reserved_msats), swarm, usage)
            )
            if self._settle_task is None:
                self._settle_task = asyncio.create_task(self._settle_loop())
            if swarm:
                self._watch_pending()

    def _charge(self, hold: Hold, swarm: bool, usage: LmUsage | None, *, again: bool) -> None:
        """Charge the request's own cost once (``again``: a retry, which first checks that
        the earlier try did not charge it before the store went away), then close the hold."""
        if usage is not None:
            usd = usd_to_nanos(usage.cost_usd) or 0
            sats = 0 if swarm else (usage.cost_sats or 0) * 1000
            # Only this charges a hold's USD, and the msats of a hold that pays nothing itself
            # (a swarm hold's msats are its payments): anything charged is the earlier try's.
            done = again and (hold.charged_usd_nanos > 0 or (not swarm and hold.paid_msats > 0))
            if (sats or usd) and not done:
                hold.charge(msats=sats, usd_nanos=usd)
        hold.close()

    async def _settle_loop(self) -> None:
        """Make the settlements that waited for the state store, once it answers again."""
        try:
            while self._unsettled:
                await asyncio.sleep(_SETTLE_RETRY_S)
                self._settle_waiting()
        finally:
            self._settle_task = None

    def _settle_waiting(self) -> None:
        waiting, self._unsettled = self._unsettled, []
        for i, (hold, swarm, usage) in enumerate(waiting):
            try:
                self._charge(hold, swarm, usage, again=True)
            except StateUnavailable:
                self._unsettled.extend(waiting[i:])
                return
            log.info("settled hold %s", hold.id)

    async def _completion(
        self, request: HttpRequest, chat: bool, endpoint: str
    ) -> HttpResponse | None:
        t0 = _perf()
        self._in_flight += 1
        self._idle.clear()
        gen = self._generation
        self._gen_in_flight[gen] = self._gen_in_flight.get(gen, 0) + 1
        task = asyncio.current_task()
        if task is not None:
            self._deadlines.add(task, self._request_timeout)
        status = 500
        try:
            if self.closing:
                err = ApiError(
                    503,
                    "The gateway is shutting down",
                    type="server_error",
                    code="shutting_down",
                    headers={"Connection": "close"},
                )
                status = 503
                self.metrics.error(endpoint, "shutting_down")
                return error_response(err)
            resp = await self._serve(request, chat, endpoint, task)
            status = resp.status if resp is not None else 200
            return resp
        finally:
            if task is not None:
                self._deadlines.discard(task)
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
            left = self._gen_in_flight[gen] - 1
            if left:
                self._gen_in_flight[gen] = left
            else:
                del self._gen_in_flight[gen]
                done = self._retired.get(gen)
                if done is not None:
                    done.set()
            self.metrics.request(endpoint, status, _perf() - t0)

    def _fail(self, endpoint: str, exc: BaseException, hold: Hold | None = None) -> HttpResponse:
        err = api_error(exc)
        if hold is not None:  # what the attempt paid, or may have paid, travels with the error
            headers = dict(err.headers or {})
            try:
                _money_headers(hold, headers)
            except StateUnavailable as state_exc:
                # What it paid is in the state store, which is away: say that, not a guess.
                log.info("%s: %s (its payments cannot be read: %s)", endpoint, exc, state_exc)
                exc, err = state_exc, api_error(state_exc)
                headers = dict(err.headers or {})
            err = ApiError(
                err.status,
                err.message,
                type=err.type,
                param=err.param,
                code=err.code,
                headers=headers,
            )
        if err.status >= 500:
            log.log(
                logging.ERROR if err.status == 500 else logging.INFO,
                "%s: %s",
                endpoint,
                exc,
                exc_info=err.status == 500,
            )
        self.metrics.error(endpoint, err.code or err.type)
        return error_response(err)

    async def _serve(
        self, request: HttpRequest, chat: bool, endpoint: str, task: asyncio.Task[Any] | None
    ) -> HttpResponse | None:
        try:
            acct = self.keys.authenticate(request.headers.get("authorization"))
            body = self._read_json(request)
            extra_models = _pop_models(body)
            req = (
                parse_embedding_request(body)
                if endpoint is _EMBED
                else parse_request(
                    body,
                    chat=chat,
                    default_max_tokens=self._default_max_tokens,
                    headers=request.headers,
                )
            )
        except Exception as exc:
            return self._fail(endpoint, exc)
        cache = self.cache
        key = None
        if cache is not None and isinstance(body, dict):
            model0 = self.aliases.get(req.model, req.model)
            key = cache_key(endpoint, model0, {**body, "models": extra_models})
        if key is None or cache is None:
            return await self._serve_chain(request, endpoint, task, acct, req, extra_models)
        hit = cache.get(key, time.monotonic())
        if hit is None:
            flight = cache.in_flight(key)
            if flight is not None:  # an identical request is on its way: share its answer
                hit = await asyncio.shield(flight)
        if hit is not None:
            return await self._cache_hit(endpoint, acct, req, hit)
        cache.begin(key)
        entry: Cached | None = None
        try:
            if self.shared_cache is not None:  # another gateway may have answered it
                entry = await self.shared_cache.get(key, time.monotonic())
                if entry is not None:
                    return await self._cache_hit(endpoint, acct, req, entry)
            resp = await self._serve_chain(request, endpoint, task, acct, req, extra_models)
            if resp is not None and resp.status == 200:
                if resp.headers is None:
                    resp.headers = {}
                headers = {
                    k: v
                    for k, v in resp.headers.items()
                    if not k.startswith(("x-swarm-cost", "x-swarm-pending"))
                }
                headers["x-swarm-cost-sats"] = "0"
                entry = Cached(resp.body, headers, time.monotonic())
                resp.headers["x-swarm-cache"] = "miss"
                if self.shared_cache is not None:
                    await self.shared_cache.put(key, entry)
            return resp
        finally:
            cache.finish(key, entry)

    async def _cache_hit(
        self, endpoint: str, acct: KeyAccount | None, req: CompletionRequest, hit: Cached
    ) -> HttpResponse:
        """A cached answer: free, but the key's model list and request rate still apply."""
        try:
            if acct is not None:
                ticket = await acct.gate.acquire(
                    self.aliases.get(req.model, req.model), 0, time.monotonic()
                )
                ticket.release()
        except ApiError as err:
            self.metrics.error(endpoint, err.code or err.type)
            return error_response(err)
        return HttpResponse(hit.body, 200, {**hit.headers, "x-swarm-cache": "hit"})

    async def _serve_chain(
        self,
        request: HttpRequest,
        endpoint: str,
        task: asyncio.Task[Any] | None,
        acct: KeyAccount | None,
        req: CompletionRequest,
        extra_models: list[str],
    ) -> HttpResponse | None:
        """Try the request's model, then its fallbacks; charge and settle each attempt."""
        hold: Hold | None = None
        swarm = False
        chain = self._model_chain(req.model, extra_models)
        for i, name in enumerate(chain):
            last = i == len(chain) - 1
            model = self.aliases.get(name, name)
            gate = acct.gate if acct is not None else None
            ticket = None
            usage: LmUsage | None = None
            settle = False  # True once the budgets were reserved and this loop must settle
            try:
                if gate is not None:
                    if not last and not gate.allows_model(model):
                        continue  # a fallback the key may not use is skipped, not an error
                    tokens = estimate_tokens(prompt_text(req.prompt)) + req.max_tokens
                    ticket = await gate.acquire(model, tokens, time.monotonic())
                try:
                    hold, lm_request, swarm = self._admit(req, model, acct)
                    if req.stream:  # _stream settles the budgets itself
                        await self._stream(request, req, lm_request, hold, swarm, task)
                        return None
                    settle = True
                    resp: LmResponse = await self.router.send(lm_request)
                finally:
                    if ticket is not None:
                        ticket.release()
                usage = resp.usage
                if ticket is not None:
                    ticket.correct(usage.total_tokens)
                backend = resp.backend
                self.metrics.completion(backend, model, usage)
                headers = {
                    "Content-Type": _JSON,
                    "x-swarm-backend": backend,
                    "x-swarm-route-reason": _header_safe(_reason(resp.decision, backend)),
                    "x-swarm-cost-sats": str(usage.cost_sats or 0),
                }
                if i:
                    headers["x-swarm-model-fallback"] = _header_safe(
                        f"{req.model} -> {name} ({i} model(s) failed)"
                    )
                if swarm and hold is not None:
                    _money_headers(hold, headers)
                if usage.cost_usd is not None:
                    headers["x-swarm-cost-usd"] = f"{usage.cost_usd:.8f}"
                if resp.swarm is not None:
                    _swarm_headers(resp.swarm, headers)
                if endpoint is _EMBED:
                    body_bytes = embedding_json(resp, resp.model or model)
                else:
                    body_bytes = completion_json(req.chat, resp, resp.model or model)
                return HttpResponse(body_bytes, 200, headers)
            except asyncio.CancelledError:
                if not self._deadlines.expired(task):
                    raise
                return self._fail(endpoint, TimeoutError(), hold if swarm else None)
            except Exception as exc:
                if not last and _falls_back(exc):
                    log.info("model %s failed (%s): trying %s", model, exc, chain[i + 1])
                    continue
                return self._fail(endpoint, exc, hold if swarm else None)
            finally:
                if settle:
                    self._settle(hold, swarm, usage)
        return None  # pragma: no cover - the last model always answers or fails above

    def _model_chain(self, model: str, extra: list[str]) -> list[str]:
        """The models to try in order: the request's, its ``models`` list, then the
        configured fallbacks of the first one."""
        chain = [model, *extra]
        for m in self._model_fallbacks.get(self.aliases.get(model, model), ()):
            chain.append(m)
        return list(dict.fromkeys(chain))[:_MAX_CHAIN]

    async def _stream(
        self,
        request: HttpRequest,
        req: CompletionRequest,
        lm_request: LmRequest,
        hold: Hold | None,
        swarm: bool,
        task: asyncio.Task[Any] | None,
    ) -> None:
        """Stream the answer as OpenAI does. Errors before the first chunk are plain JSON
        errors with their status (raised to the caller); after it, an error event ends the
        stream."""
        usage: LmUsage | None = None
        model = lm_request.model
        stream: LmStream | None = None
        try:
            stream = await self.router.open_stream(lm_request)
            backend = stream.backend
            headers = dict(STREAM_HEADERS)
            if self._cors:
                headers.update(self.cors_headers(request))
            headers["x-swarm-backend"] = backend
            headers["x-swarm-route-reason"] = _header_safe(_reason(stream.decision, backend))
            try:
                resp = await request.stream(200, headers)
            except ConnectionResetError:
                log.info("client went away before its stream started")
                return None
            enc = ChunkEncoder(chat=req.chat, model=model, include_usage=req.include_usage)
            write = resp.write
            finish: str | None = None
            try:
                if req.chat:
                    await write(enc.start())
                async for chunk in stream:
                    if (
                        chunk.delta is not None
                        or chunk.logprobs is not None
                        or chunk.swarm is not None
                    ):
                        await write(enc.rich(chunk))  # tool call deltas, logprobs, a verdict
                    elif chunk.text:
                        await write(enc.text(chunk.text))
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if chunk.finish_reason:
                        finish = chunk.finish_reason
                await write(enc.finish(finish))
                if req.include_usage:
                    await write(enc.usage(usage_dict(usage or LmUsage())))
                await write(DONE)
                await resp.write_eof()
            except ConnectionResetError:
                log.info("client went away during a stream")
                return None
            except asyncio.CancelledError:
                if not self._deadlines.expired(task):
                    raise
                await self._end_stream(resp, req, TimeoutError())
                return None
            except Exception as exc:
                await self._end_stream(resp, req, exc)
                return None
            if usage is not None:
                self.metrics.completion(backend, model, usage)
            return None
        finally:
            if stream is not None:
                await stream.aclose()
            self._settle(hold, swarm, usage)

    async def _end_stream(
        self, resp: ResponseStream, req: CompletionRequest, exc: BaseException
    ) -> None:
        """A stream that already started failed: say so in an error event and end it."""
        err = api_error(exc)
        self.metrics.error(req_endpoint(req), err.code or err.type)
        log.info("stream failed after it started: %s", exc)
        try:
            await resp.write(error_event(err))
            await resp.write_eof()
        except ConnectionResetError:
            pass


def _swarm_headers(outcome: SwarmOutcome, headers: dict[str, str]) -> None:
    """What a swarm answer carries: who agreed (public keys, hex) and the NIP-90 job id."""
    if outcome.agreeing:
        headers["x-swarm-agreeing"] = ",".join(outcome.agreeing)
    if outcome.dissenting:
        headers["x-swarm-dissenting"] = ",".join(outcome.dissenting)
    if outcome.job_id:
        headers["x-swarm-job-id"] = outcome.job_id
    if outcome.comparator_note:
        headers["x-swarm-comparator"] = _header_safe(outcome.comparator_note)[:200]


def _reason(decision: RoutingDecision | None, backend: str) -> str:
    """Why ``backend`` answered: the decision's reason, or the failover that led to it."""
    if decision is None or decision.first is None:
        return ""
    if decision.backend != backend:
        return f"failover to {backend!r} after {decision.backend!r} failed ({decision.reason})"
    return decision.reason


_MAX_CHAIN = 8  # models one request may try
_EXPOSED = ", ".join(
    (
        "x-swarm-backend",
        "x-swarm-route-reason",
        "x-swarm-cost-sats",
        "x-swarm-cost-msats",
        "x-swarm-pending-msats",
        "x-swarm-cost-usd",
        "x-swarm-agreeing",
        "x-swarm-dissenting",
        "x-swarm-job-id",
        "x-swarm-model-fallback",
        "x-swarm-cache",
    )
)


def _pop_models(body: Any) -> list[str]:
    """The request's ``models`` list (OpenRouter's: tried in order), taken out of the body
    so it never reaches an upstream; ``model`` defaults to its first entry."""
    if not isinstance(body, dict) or "models" not in body:
        return []
    models = body.pop("models")
    if models is None:
        return []
    if (
        not isinstance(models, list)
        or not models
        or not all(isinstance(m, str) and m for m in models)
    ):
        raise bad_request("models must be a non-empty array of model names", "models")
    if len(models) > _MAX_CHAIN:
        raise bad_request(f"models may name at most {_MAX_CHAIN} models", "models")
    if body.get("model") is None:
        body["model"] = models[0]
    return list(models)


def _falls_back(exc: BaseException) -> bool:
    """Whether the next model may be tried: upstream faults and unavailability, never a
    caller's mistake, a budget or limit, or an attempt that already paid."""
    if isinstance(exc, (ApiError, InvalidRequest, PaidFailure, BudgetExceeded)):
        return False
    if is_caller_error(exc):
        return False
    return isinstance(
        exc, (BackendError, BackendNotFound, CircuitBreakerOpen, QuorumNotReached, TimeoutError)
    )


def _money_headers(hold: Hold, headers: dict[str, str]) -> None:
    """What a swarm request paid (``x-swarm-cost-sats``, exact in ``-msats``) and what may
    have left the wallet without an answer yet (``x-swarm-pending-msats``)."""
    paid = hold.paid_msats
    headers["x-swarm-cost-sats"] = str(paid // 1000)
    headers["x-swarm-cost-msats"] = str(paid)
    pending = hold.pending_msats
    if pending:
        headers["x-swarm-pending-msats"] = str(pending)


def swarm_account(name: str) -> str:
    return f"swarm:{name}"


# Chat templates add tokens around each message and before the first: generous bounds, since a
# reservation below the real cost would let concurrent requests overspend.
_TEMPLATE_TOKENS_PER_MESSAGE = 32
_TEMPLATE_TOKENS = 64


def _prompt_bytes(prompt: Any) -> int:
    """An upper bound on a prompt's tokens (a token is at least one byte, plus the chat
    template's), for reservations."""
    if isinstance(prompt, str):
        return len(prompt.encode()) + _TEMPLATE_TOKENS
    total = _TEMPLATE_TOKENS
    for m in prompt:
        content = m.get("content") if isinstance(m, dict) else getattr(m, "content", "")
        total += len(str(content or "").encode()) + _TEMPLATE_TOKENS_PER_MESSAGE
        calls = m.get("tool_calls") if isinstance(m, dict) else None
        if calls:
            total += len(str(calls).encode())
    return total


def req_endpoint(req: CompletionRequest) -> str:
    return _CHAT if req.chat else _TEXT


def _redis_link(url: str | None) -> RedisLink | None:
    """The link to ``state.redis``; the ``redis`` package comes with the ``state`` extra."""
    if url is None:
        return None
    try:
        from .redis_link import RedisLink
    except ImportError as exc:
        raise ConfigError(
            "state.redis", f"needs the redis package: pip install 'nostr-swarm[state]' ({exc})"
        ) from None
    return RedisLink(url)


__all__ = ["Gateway", "error_response"]
