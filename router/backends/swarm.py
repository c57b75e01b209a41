"""The Nostr swarm as a backend: :class:`SwarmBackend` wraps a ``client.SwarmClient``."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator
from typing import Any

from client.nostr.errors import BudgetExceeded, QuorumNotReached

from ..errors import BackendError, InvalidRequest, PaidFailure
from ..types import LmResponse, LmUsage, Prompt, StreamChunk, estimate_tokens, prompt_text
from .base import LmBackend

# Sampling parameters SwarmClient.complete takes as keywords; other scalar parameters travel as
# NIP-90 ``param`` tags.
_SAMPLING = ("temperature", "top_p", "top_k", "seed")
# Per-request overrides of the backend's own settings.
_OVERRIDES = ("quorum", "max_sats", "timeout", "comparator", "targets", "encrypt", "bid_msats")
# OpenAI parameters a quorum of text answers cannot honour (a NIP-90 job returns only text).
_UNHONOURED = frozenset(
    {
        "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call",
        "logprobs", "top_logprobs", "response_format", "logit_bias", "n", "audio",
        "modalities", "prediction",
    }
)  # fmt: skip
#: The largest quorum a request may ask for when the backend names no ``max_quorum``.
DEFAULT_MAX_QUORUM = 5


class _RequestGate:
    """One request's payment gate: the backend's own cap and budget, then the caller's hold
    (``hold``, e.g. the gateway's reservation) if there is one. Idempotent per payment hash."""

    __slots__ = ("backend", "cap_msats", "hashes", "outer", "used")

    def __init__(self, backend: SwarmBackend, cap_msats: int | None, outer: Any) -> None:
        self.backend = backend
        self.cap_msats = cap_msats
        self.outer = outer
        self.used = 0
        self.hashes: dict[str, int] = {}

    def authorize(self, payment_hash: str, msats: int) -> bool:
        if payment_hash in self.hashes:
            return True
        if self.cap_msats is not None and self.used + msats > self.cap_msats:
            return False
        if self.outer is not None and not self.outer.authorize(payment_hash, msats):
            return False
        self.used += msats
        self.hashes[payment_hash] = msats
        self.backend._pending[payment_hash] = msats
        return True

    def outcome(self, payment_hash: str, status: str) -> None:
        if self.outer is not None:
            self.outer.outcome(payment_hash, status)
        msats = self.hashes.get(payment_hash)
        if msats is None:
            return
        if status == "paid":
            self.backend._settle_pending(payment_hash, True)
        elif status in ("failed", "refused"):
            self.backend._settle_pending(payment_hash, False)
            self.used -= msats
            del self.hashes[payment_hash]


class SwarmBackend(LmBackend):
    """Sends completions to the swarm through a ``SwarmClient`` (or anything with the same
    ``complete(prompt, *, model, quorum, max_sats, timeout, ...)`` returning an object with
    ``text``, ``agreeing``, ``dissenting``, ``sats_paid`` or ``msats_paid``, and ``timings``).

    Model names are ``swarm/<model>`` (``swarm/any`` leaves the model to the providers); plain
    names listed in ``models`` are served too. ``quorum``, ``max_sats`` (per request) and
    ``timeout_s`` are defaults a request can override with keyword parameters of the same
    names; a request may lower the quorum and the bid but never raise them above
    ``max_quorum`` (default: the larger of ``quorum`` and :data:`DEFAULT_MAX_QUORUM`) and
    ``max_bid_msats`` (default: the configured ``bid_msats``; ``max_sats`` caps the whole job):
    above them it raises ``InvalidRequest``. ``budget_sats`` caps the total this backend spends
    (requests in flight reserve their ``max_sats``; payments whose outcome is unknown stay
    counted until :meth:`resolve_pending` learns it), raising ``BudgetExceeded`` once used up.
    A request's ``hold`` parameter (a :class:`~client.wallet.payments.PaymentGate`) must
    authorize every payment too. Costs are reported in sats; the router converts them to USD
    when given a BTC price. A quorum that is not reached raises ``QuorumNotReached`` (nothing
    was paid), which the router counts as a failure and fails over from.

    ``owns_deadline``: the job's ``timeout_s`` is its deadline, and the payment after the
    quorum runs to its outcome; the router puts no per-attempt timeout of its own around it.

    ``selector`` (a ``client.customer.selection.Selector``; by default the client's own
    ``selector``) gives the router's adaptive strategy this backend's expected figures from the
    reputation ledger (:meth:`reputation_figures`), recomputed at most every ``figures_ttl_s``
    seconds.
    """

    def __init__(
        self,
        client: Any,
        *,
        name: str = "swarm",
        quorum: int = 2,
        max_sats: int | None = None,
        timeout_s: float = 30.0,
        budget_sats: int | None = None,
        prefix: str = "swarm/",
        models: list[str] | None = None,
        expected_latency_ms: float = 5000.0,
        selector: Any = None,
        figures_ttl_s: float = 1.0,
        max_quorum: int | None = None,
        max_bid_msats: int | None = None,
        **client_options: Any,
    ) -> None:
        if quorum < 1:
            raise ValueError("quorum must be at least 1")
        if max_quorum is not None and max_quorum < quorum:
            raise ValueError(f"quorum {quorum} is above max_quorum {max_quorum}")
        if max_sats is not None and max_sats < 0:
            raise ValueError("max_sats must not be negative")
        if budget_sats is not None and budget_sats < 0:
            raise ValueError("budget_sats must not be negative")
        self.client = client
        self.name = name
        self.quorum = quorum
        self.max_sats = max_sats
        self.timeout_s = timeout_s
        self.budget_sats = budget_sats
        self.prefix = prefix
        self._models = list(models or [])
        self.expected_latency_ms = expected_latency_ms
        self.client_options = client_options
        self.max_quorum = max_quorum if max_quorum is not None else max(quorum, DEFAULT_MAX_QUORUM)
        bid = client_options.get("bid_msats")
        if max_bid_msats is None and isinstance(bid, int):
            max_bid_msats = bid
        self.max_bid_msats = max_bid_msats
        self.spent_msats = 0
        self._reserved = 0  # sats held by requests in flight
        self._pending: dict[str, int] = {}  # payment hash -> msats of payments not yet resolved
        self._accepts = _accepted_keywords(client.complete)
        self.selector = selector if selector is not None else getattr(client, "selector", None)
        self.figures_ttl_s = figures_ttl_s
        self._figures: dict[str, tuple[float, Any]] = {}

    def supported_models(self) -> list[str]:
        return [*self._models, f"{self.prefix}*"]

    def supports_model(self, model: str) -> bool:
        return model.startswith(self.prefix) or model in self._models

    def swarm_model(self, model: str) -> str | None:
        """The model name providers see: ``swarm/llama3`` -> ``llama3``; ``swarm/any`` -> None."""
        inner = model[len(self.prefix) :] if model.startswith(self.prefix) else model
        return None if inner in ("", "*", "any") else inner

    owns_deadline = True

    @property
    def spent_sats(self) -> int:
        return self.spent_msats // 1000

    @property
    def pending_msats(self) -> int:
        """Msats of payments whose outcome is not known yet (counted against the budget)."""
        return sum(self._pending.values())

    @property
    def remaining_sats(self) -> int | None:
        if self.budget_sats is None:
            return None
        used_msats = self.spent_msats + self.pending_msats
        return max(0, self.budget_sats - -(-used_msats // 1000) - self._reserved)

    def _settle_pending(self, payment_hash: str, paid: bool) -> None:
        msats = self._pending.pop(payment_hash, None)
        if msats is not None and paid:
            self.spent_msats += msats

    async def resolve_pending(self) -> int:
        """Ask the wallet about payments whose outcome was not known; returns how many are
        still open. Paid ones are charged, failed ones released."""
        payer = getattr(self.client, "payer", None)
        if payer is None or not self._pending:
            return len(self._pending)
        await payer.resolve_open()
        for h in list(self._pending):
            rec = payer.ledger.get(h)
            if rec is not None and rec.state in ("paid", "failed"):
                self._settle_pending(h, rec.state == "paid")
        return len(self._pending)

    async def complete(
        self, model: str, prompt: Prompt, max_tokens: int = 256, **params: Any
    ) -> LmResponse:
        text = prompt_text(prompt)
        opts: dict[str, Any] = dict(self.client_options)
        for key in _OVERRIDES:
            if key in params:
                opts[key] = params.pop(key)
        hold = params.pop("hold", None)
        on_progress = params.pop("_on_progress", None)
        name = opts.get("comparator")
        if isinstance(name, str):  # by name (the gateway's field): the object the client takes
            opts["comparator"] = _comparator(name, text, params.get("response_format"))
        _check_request(self.name, prompt, params)  # before anything is reserved or paid
        quorum = opts.pop("quorum", self.quorum)
        max_sats = opts.pop("max_sats", self.max_sats)
        timeout = opts.pop("timeout", self.timeout_s)
        if type(quorum) is not int or quorum < 1:
            raise InvalidRequest("quorum must be a positive integer")
        if quorum > self.max_quorum:
            raise InvalidRequest(f"quorum {quorum} is above this backend's limit {self.max_quorum}")
        bid = opts.get("bid_msats")
        if bid is not None:
            if type(bid) is not int or bid < 0:
                raise InvalidRequest("bid_msats must be a non-negative integer")
            if self.max_bid_msats is not None and bid > self.max_bid_msats:
                raise InvalidRequest(
                    f"bid of {bid} msats is above this backend's limit {self.max_bid_msats} msats"
                )
        if max_sats is not None and (type(max_sats) is not int or max_sats < 0):
            raise InvalidRequest("max_sats must be a non-negative integer")
        if self.max_bid_msats is not None:
            cap = -(-self.max_bid_msats * quorum // 1000)
            max_sats = cap if max_sats is None else min(max_sats, cap)
        reserve = self._reserve(max_sats)
        if reserve is not None:
            max_sats = reserve
        gate = _RequestGate(self, None if max_sats is None else max_sats * 1000, hold)
        kwargs: dict[str, Any] = {
            "model": self.swarm_model(model),
            "quorum": quorum,
            "max_sats": max_sats,
            "timeout": timeout,
            "max_tokens": max_tokens,
            "gate": gate,
            **opts,
        }
        if on_progress is not None:
            kwargs["on_progress"] = on_progress
        extra: dict[str, str | int | float] = {}
        for key, value in params.items():
            if key in _SAMPLING:
                kwargs[key] = value
            elif key != "max_completion_tokens":  # the job's max_tokens already says it
                extra[key] = value  # _check_request let only plain values through
        if extra:
            kwargs["params"] = extra
        if self._accepts is not None:
            if hold is not None and "gate" not in self._accepts:
                raise InvalidRequest(f"{self.name}: this swarm client cannot honour a payment hold")
            kwargs = {k: v for k, v in kwargs.items() if k in self._accepts}
        t0 = time.perf_counter()
        try:
            result = await self.client.complete(text, **kwargs)
        except QuorumNotReached as exc:
            received = exc.received
            paid = _msats_paid(received)
            unknown = getattr(received, "msats_unknown", 0)
            if not paid and not unknown:
                raise  # provably nothing paid: the router may fail over
            if not gate.hashes:
                self.spent_msats += paid
            raise PaidFailure(
                f"{self.name}: {exc} after paying {paid} msats in advance"
                + (f" ({unknown} msats of unknown outcome)" if unknown else ""),
                backend=self.name,
                msats_paid=paid,
                msats_unknown=unknown if isinstance(unknown, int) else 0,
            ) from exc
        finally:
            if reserve is not None:
                self._reserved -= reserve
        msats = _msats_paid(result)
        if not gate.hashes:  # a client that pays without the gate: charge what it reports
            self.spent_msats += msats
        sats = msats // 1000
        answer = result.text or ""
        timings = getattr(result, "timings", None)
        total_ms = getattr(timings, "total_ms", None)
        latency = float(total_ms) if total_ms is not None else (time.perf_counter() - t0) * 1000.0
        p, c = estimate_tokens(text), estimate_tokens(answer)
        meta = {
            "agreeing": list(getattr(result, "agreeing", ()) or ()),
            "dissenting": list(getattr(result, "dissenting", ()) or ()),
        }
        job_id = getattr(result, "job_id", None)
        if job_id is not None:
            meta["job_id"] = job_id
        meta["msats_paid"] = msats
        decision = getattr(result, "decision", None)
        note = getattr(decision, "note", None)
        if note:
            meta["comparator"] = note
        unknown = getattr(result, "msats_unknown", 0)
        if isinstance(unknown, int) and unknown:
            meta["msats_unknown"] = unknown
        return LmResponse(
            answer, LmUsage(p, c, p + c, None, sats), model, "stop", latency, self.name, meta
        )

    async def stream_chunks(
        self, model: str, prompt: Prompt, max_tokens: int = 256, **params: Any
    ) -> AsyncIterator[StreamChunk]:
        """Stream with verification: the first provider's answer as soon as it arrives, then
        the quorum's verdict in the last chunk (``delta["swarm"]``: ``agreeing``,
        ``dissenting``, ``comparator``). When the quorum agrees on another answer than the
        one streamed, the stream ends with an error, never silently."""
        first: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

        def progress(p: Any) -> None:
            if p.kind == "result" and p.provider and first.empty():
                first.put_nowait((p.provider, p.text or p.detail))

        job = asyncio.ensure_future(
            self.complete(model, prompt, max_tokens, _on_progress=progress, **params)
        )
        streamed: tuple[str, str] | None = None
        try:
            getter = asyncio.ensure_future(first.get())
            done, _ = await asyncio.wait({job, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                streamed = getter.result()
                yield StreamChunk(streamed[1])
            else:
                getter.cancel()
            resp = await job
        finally:
            if not job.done():
                job.cancel()  # the caller left: the job's payment, if any, is shielded
        meta = resp.meta or {}
        agreeing = list(meta.get("agreeing", ()))
        if streamed is not None and streamed[0] not in agreeing and streamed[1] != resp.text:
            raise BackendError(
                f"{self.name}: the quorum agreed on another answer than the one streamed "
                f"(from {streamed[0][:16]}, which dissented)",
                backend=self.name,
            )
        if streamed is None:
            yield StreamChunk(resp.text)
        verdict = {
            "verdict": "agreed",
            "agreeing": agreeing,
            "dissenting": list(meta.get("dissenting", ())),
            "job_id": meta.get("job_id"),
            "comparator": meta.get("comparator"),
        }
        yield StreamChunk("", resp.usage, resp.finish_reason, delta={"swarm": verdict})

    def _reserve(self, max_sats: int | None) -> int | None:
        """Check the budget and hold this request's share of it (None: no budget)."""
        remaining = self.remaining_sats
        if remaining is None:
            return None
        if remaining <= 0:
            raise BudgetExceeded(
                f"{self.name}: budget of {self.budget_sats} sats used up "
                f"({self.spent_sats} spent, {self._reserved} held by requests in flight)"
            )
        hold = remaining if max_sats is None else min(max_sats, remaining)
        self._reserved += hold
        return hold

    def reputation_figures(self, model: str) -> Any:
        """What the reputation ledger expects of the next job for ``model`` (latency, failure
        rate; ``client.customer.selection.Figures``), or None without a selector or a record."""
        sel = self.selector
        if sel is None:
            return None
        now = time.monotonic()
        cached = self._figures.get(model)
        if cached is not None and now - cached[0] < self.figures_ttl_s:
            return cached[1]
        fig = sel.figures(self.quorum, self.swarm_model(model))
        if len(self._figures) > 1000:
            self._figures.clear()
        self._figures[model] = (now, fig)
        return fig

    async def health_check(self) -> bool:
        check = getattr(self.client, "health_check", None)
        if check is not None:
            return bool(await check())
        pool = getattr(self.client, "pool", None)
        connected = getattr(pool, "connected_urls", None)
        if connected is not None:
            return bool(connected())
        return True

    async def close(self) -> None:
        """The client belongs to the caller (it is usually an ``async with`` of its own)."""
        return None

    def __repr__(self) -> str:
        return f"SwarmBackend(name={self.name!r}, quorum={self.quorum})"


def _check_request(name: str, prompt: Prompt, params: dict[str, Any]) -> None:
    """Raise ``InvalidRequest`` for what a swarm job cannot carry, naming it, rather than
    dropping it: tools and tool-call histories, non-text content, structured parameters
    (a NIP-90 ``param`` holds one plain value)."""
    for key, value in params.items():
        if key in _SAMPLING or key == "max_completion_tokens":
            continue
        if key in _UNHONOURED:
            raise InvalidRequest(f"{name}: the swarm cannot honour parameter {key!r}")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise InvalidRequest(
                f"{name}: parameter {key!r} must be one string or number for the swarm "
                f"(a NIP-90 param), not {type(value).__name__}"
            )
    if isinstance(prompt, str):
        return
    for i, m in enumerate(prompt):
        if m.get("tool_calls") or m.get("role") == "tool":
            raise InvalidRequest(f"{name}: messages[{i}]: the swarm cannot take tool calls")
        content = m.get("content")
        if isinstance(content, list) and any(
            not isinstance(p, dict) or p.get("type") != "text" for p in content
        ):
            raise InvalidRequest(f"{name}: messages[{i}].content: the swarm takes text only")


def _comparator(name: str, prompt: str, response_format: Any) -> Any:
    from client.customer.quorum import comparator_by_name

    try:
        return comparator_by_name(name, prompt=prompt, response_format=response_format)
    except (ValueError, KeyError, ImportError) as exc:
        raise InvalidRequest(f"comparator {name!r}: {exc}") from None


def _msats_paid(result: Any) -> int:
    msats = getattr(result, "msats_paid", None)
    if isinstance(msats, int):
        return msats
    sats = getattr(result, "sats_paid", None)
    return sats * 1000 if isinstance(sats, int) else 0


def _accepted_keywords(fn: Any) -> frozenset[str] | None:
    """The keyword names ``fn`` takes, or None when it takes ``**kwargs`` (then pass all)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return frozenset(
        name
        for name, p in sig.parameters.items()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
