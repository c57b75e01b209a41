"""The Nostr swarm as a backend: :class:`SwarmBackend` wraps a ``client.SwarmClient``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from client.customer.quorum import Comparator
from client.nostr.errors import BudgetExceeded, QuorumNotReached

from ..errors import BackendError, InvalidRequest, PaidFailure
from ..request import Encryption, LmRequest, SwarmObserver, SwarmTerms
from ..types import (
    LmResponse,
    LmUsage,
    Prompt,
    StreamChunk,
    SwarmOutcome,
    estimate_tokens,
    prompt_text,
)
from .base import LmBackend

if TYPE_CHECKING:
    from client.customer.copy_guard import SealingMode
    from client.customer.prepay import PrepayPolicy
    from client.customer.selection import Figures, Selector
    from client.customer.swarm import Progress, ProgressCallback
    from client.wallet.payments import PaymentGate

log = logging.getLogger("router.backends.swarm")

# Sampling options SwarmClient.complete takes as keywords; the others travel as NIP-90 params.
_CLIENT_SAMPLING = frozenset({"temperature", "top_p", "top_k", "seed"})
# Passthrough fields the swarm accepts and sends nowhere: they identify the caller to OpenAI.
_NOT_SENT = frozenset({"user"})
#: The largest quorum a request may ask for when the backend names no ``max_quorum``.
DEFAULT_MAX_QUORUM = 5
_NO_TERMS = SwarmTerms()


class QuorumVerdict(Protocol):
    """What :class:`SwarmBackend` reads of a job's quorum decision."""

    @property
    def note(self) -> str: ...

    @property
    def scores(self) -> tuple[tuple[str, float], ...]: ...


class JobTimings(Protocol):
    @property
    def total_ms(self) -> float: ...


class SwarmAnswer(Protocol):
    """What a swarm client's ``complete`` returns (``client.SwarmResult`` is one)."""

    @property
    def text(self) -> str | None: ...

    @property
    def agreeing(self) -> tuple[str, ...]: ...

    @property
    def dissenting(self) -> tuple[str, ...]: ...

    @property
    def job_id(self) -> str: ...

    @property
    def msats_paid(self) -> int: ...

    @property
    def msats_unknown(self) -> int: ...

    @property
    def decision(self) -> QuorumVerdict: ...

    @property
    def timings(self) -> JobTimings: ...


class SwarmJobs(Protocol):
    """The swarm client :class:`SwarmBackend` drives: ``client.SwarmClient``, or a stand-in
    with the same ``complete``. Every keyword is passed on every call, so a client that lacks
    one fails at once with ``TypeError`` instead of a term being dropped."""

    async def complete(
        self,
        prompt: str,
        *,
        model: str | None,
        quorum: int,
        max_sats: int | None,
        timeout: float,  # noqa: ASYNC109 - SwarmClient.complete's name
        bid_msats: int | None,
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        top_k: int | None,
        seed: int | None,
        params: Mapping[str, str | int | float] | None,
        targets: Sequence[str] | None,
        encrypt: bool | Encryption,
        comparator: Comparator | None,
        providers_expected: int | None,
        on_progress: ProgressCallback | None,
        sealing: SealingMode,
        commit_reveal: bool,
        gate: PaymentGate | None,
        prepay: PrepayPolicy | None,
    ) -> SwarmAnswer: ...


class _RequestGate:
    """One request's payment gate: the backend's own cap and budget, then the caller's hold
    (``SwarmTerms.hold``, e.g. the gateway's reservation) if there is one. Idempotent per
    payment hash."""

    __slots__ = ("backend", "cap_msats", "hashes", "outer", "used")

    def __init__(
        self, backend: SwarmBackend, cap_msats: int | None, outer: PaymentGate | None
    ) -> None:
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
    """Sends completions to the swarm through a ``SwarmClient`` (or anything that satisfies
    :class:`SwarmJobs`).

    Model names are ``swarm/<model>`` (``swarm/any`` leaves the model to the providers); plain
    names listed in ``models`` are served too. ``quorum``, ``max_sats`` (per request),
    ``timeout_s``, ``bid_msats`` and ``comparator`` are defaults a request's
    :class:`~router.request.SwarmTerms` can override; a request may lower the quorum and the
    bid but never raise them above ``max_quorum`` (default: the larger of ``quorum`` and
    :data:`DEFAULT_MAX_QUORUM`) and ``max_bid_msats`` (default: ``bid_msats``; ``max_sats``
    caps the whole job): above them it raises ``InvalidRequest``. ``budget_sats`` caps the
    total this backend spends (requests in flight reserve their ``max_sats``; payments whose
    outcome is unknown stay counted until :meth:`resolve_pending` learns it), raising
    ``BudgetExceeded`` once used up. A request's ``hold`` (a payment gate) must authorize every
    payment too; its ``observer`` is told the job's progress and outcome (a live view).
    ``providers_expected`` and ``prepay`` go to every job. Costs are reported in
    sats; the router converts them to USD when given a BTC price. A quorum that is not reached
    raises ``QuorumNotReached`` (nothing was paid), which the router counts as a failure and
    fails over from.

    What a job cannot carry is refused with ``InvalidRequest`` naming it, before anything is
    reserved or published: passthrough fields (tools, logprobs, response_format, ...; ``user``
    is accepted and not sent), a ``stop`` list, tool-call histories and non-text content.
    ``temperature``, ``top_p``, ``top_k`` and ``seed`` are the job's own parameters; the other
    sampling options and ``SwarmTerms.job_params`` travel as NIP-90 ``param`` tags.

    The answer's ``swarm`` (:class:`~router.types.SwarmOutcome`) says who agreed and
    dissented, the job id, what was paid and what may have been.

    ``owns_deadline``: the job's ``timeout_s`` is its deadline, and the payment after the
    quorum runs to its outcome; the router puts no per-attempt timeout of its own around it.

    ``selector`` (a ``client.customer.selection.Selector``; by default the client's own
    ``selector``) gives the router's adaptive strategy this backend's expected figures from the
    reputation ledger (:meth:`reputation_figures`), recomputed at most every ``figures_ttl_s``
    seconds.
    """

    def __init__(
        self,
        client: SwarmJobs,
        *,
        name: str = "swarm",
        quorum: int = 2,
        max_sats: int | None = None,
        timeout_s: float = 30.0,
        budget_sats: int | None = None,
        prefix: str = "swarm/",
        models: list[str] | None = None,
        expected_latency_ms: float = 5000.0,
        selector: Selector | None = None,
        figures_ttl_s: float = 1.0,
        max_quorum: int | None = None,
        max_bid_msats: int | None = None,
        bid_msats: int | None = None,
        comparator: str | Comparator | None = None,
        providers_expected: int | None = None,
        prepay: PrepayPolicy | None = None,
        judge: Callable[[str, str, str], float] | None = None,
        judge_options: Mapping[str, Any] | None = None,
    ) -> None:
        if quorum < 1:
            raise ValueError("quorum must be at least 1")
        if max_quorum is not None and max_quorum < quorum:
            raise ValueError(f"quorum {quorum} is above max_quorum {max_quorum}")
        if max_sats is not None and max_sats < 0:
            raise ValueError("max_sats must not be negative")
        if budget_sats is not None and budget_sats < 0:
            raise ValueError("budget_sats must not be negative")
        if bid_msats is not None and bid_msats < 0:
            raise ValueError("bid_msats must not be negative")
        self.client = client
        self.name = name
        self.quorum = quorum
        self.max_sats = max_sats
        self.timeout_s = timeout_s
        self.budget_sats = budget_sats
        self.prefix = prefix
        self._models = list(models or [])
        self.expected_latency_ms = expected_latency_ms
        self.bid_msats = bid_msats
        self.comparator = comparator
        self.providers_expected = providers_expected
        self.prepay = prepay
        # A judge model for the comparators that ask one (auto and judge, by name).
        self.judge = judge
        self.judge_options = dict(judge_options or {})
        self.max_quorum = max_quorum if max_quorum is not None else max(quorum, DEFAULT_MAX_QUORUM)
        self.max_bid_msats = max_bid_msats if max_bid_msats is not None else bid_msats
        self.spent_msats = 0
        self._reserved = 0  # sats held by requests in flight
        self._pending: dict[str, int] = {}  # payment hash -> msats of payments not yet resolved
        self.selector = selector if selector is not None else getattr(client, "selector", None)
        self.figures_ttl_s = figures_ttl_s
        self._figures: dict[str, tuple[float, Figures | None]] = {}

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

    async def send(self, request: LmRequest) -> LmResponse:
        return await self._run(request, None)

    async def _run(self, request: LmRequest, on_progress: ProgressCallback | None) -> LmResponse:
        terms = request.swarm or _NO_TERMS
        prompt = request.prompt
        text = prompt_text(prompt)
        # What a job cannot carry is refused before anything is reserved or paid.
        job_params = _job_params(self.name, request, terms)
        quorum = self.quorum if terms.quorum is None else terms.quorum
        if quorum > self.max_quorum:
            raise InvalidRequest(f"quorum {quorum} is above this backend's limit {self.max_quorum}")
        bid = self.bid_msats if terms.bid_msats is None else terms.bid_msats
        if bid is not None and self.max_bid_msats is not None and bid > self.max_bid_msats:
            raise InvalidRequest(
                f"bid of {bid} msats is above this backend's limit {self.max_bid_msats} msats"
            )
        max_sats = self.max_sats if terms.max_sats is None else terms.max_sats
        if self.max_bid_msats is not None:
            cap = -(-self.max_bid_msats * quorum // 1000)
            max_sats = cap if max_sats is None else min(max_sats, cap)
        comparator = self.comparator if terms.comparator is None else terms.comparator
        if isinstance(comparator, str):  # by name: the client takes the object
            comparator = _comparator(comparator, text, self.judge, self.judge_options)
        timeout = self.timeout_s if terms.timeout_s is None else terms.timeout_s
        sampling = request.sampling
        reserve = self._reserve(max_sats)
        if reserve is not None:
            max_sats = reserve
        gate = _RequestGate(self, None if max_sats is None else max_sats * 1000, terms.hold)
        observer = terms.observer
        if observer is not None:
            on_progress = observer if on_progress is None else _both(on_progress, observer)
        seen: Any = None  # what the observer is told at the end
        try:
            try:
                job = self.client.complete(
                    text,
                    model=self.swarm_model(request.model),
                    quorum=quorum,
                    max_sats=max_sats,
                    timeout=timeout,
                    bid_msats=bid,
                    max_tokens=request.max_tokens,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    top_k=sampling.top_k,
                    seed=sampling.seed,
                    params=job_params,
                    targets=terms.targets,
                    encrypt=False if terms.encrypt is None else terms.encrypt,
                    comparator=comparator,
                    providers_expected=self.providers_expected,
                    on_progress=on_progress,
                    sealing="off" if terms.sealing is None else terms.sealing,
                    commit_reveal=bool(terms.commit_reveal),
                    gate=gate,
                    prepay=self.prepay,
                )
            except TypeError as exc:
                # Raised by the call itself (the job has not started): this client cannot
                # take the swarm's terms. Loud, never a term silently left out.
                raise TypeError(
                    f"{self.name}: {type(self.client).__name__}.complete does not take the "
                    f"swarm backend's call ({exc})"
                ) from exc
            result = await job
            seen = result
        except QuorumNotReached as exc:
            received = exc.received
            seen = received or None
            paid = getattr(received, "msats_paid", 0)
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
                msats_unknown=unknown,
            ) from exc
        finally:
            if reserve is not None:
                self._reserved -= reserve
            if observer is not None:
                _finish(observer, seen)
        msats = result.msats_paid
        if not gate.hashes:  # a client that pays without the gate: charge what it reports
            self.spent_msats += msats
        answer = result.text or ""
        latency = float(result.timings.total_ms)
        p, c = estimate_tokens(text), estimate_tokens(answer)
        verdict = result.decision
        outcome = SwarmOutcome(
            tuple(result.agreeing),
            tuple(result.dissenting),
            result.job_id,
            msats,
            result.msats_unknown,
            verdict.note or None,
            tuple(verdict.scores),
        )
        return LmResponse(
            answer,
            LmUsage(p, c, p + c, None, msats // 1000),
            request.model,
            "stop",
            latency,
            self.name,
            swarm=outcome,
        )

    async def send_stream(self, request: LmRequest) -> AsyncIterator[StreamChunk]:
        """Stream with verification: the first provider's answer as soon as it arrives, then
        the quorum's verdict in the last chunk (``StreamChunk.swarm``). When the quorum agrees
        on another answer than the one streamed, the stream ends with an error, never
        silently."""
        first: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

        def progress(p: Any) -> None:
            if p.kind == "result" and p.provider and first.empty():
                first.put_nowait((p.provider, p.text or p.detail))

        job = asyncio.ensure_future(self._run(request, progress))
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
        outcome = resp.swarm
        assert outcome is not None  # _run always reports one
        if (
            streamed is not None
            and streamed[0] not in outcome.agreeing
            and streamed[1] != resp.text
        ):
            raise BackendError(
                f"{self.name}: the quorum agreed on another answer than the one streamed "
                f"(from {streamed[0][:16]}, which dissented)",
                backend=self.name,
            )
        if streamed is None:
            yield StreamChunk(resp.text)
        yield StreamChunk("", resp.usage, resp.finish_reason, swarm=outcome)

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

    def reputation_figures(self, model: str) -> Figures | None:
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


def _both(first: ProgressCallback, second: ProgressCallback) -> ProgressCallback:
    def both(p: Progress) -> None:
        first(p)
        second(p)

    return both


def _finish(observer: SwarmObserver, result: Any) -> None:
    try:
        observer.finish(result)
    except Exception:  # a live view's bug must not change the job's outcome
        log.exception("swarm job observer failed")


def _job_params(
    name: str, request: LmRequest, terms: SwarmTerms
) -> dict[str, str | int | float] | None:
    """The job's NIP-90 ``param`` tags: sampling options the client takes no keyword for, and
    ``terms.job_params``. Raises ``InvalidRequest`` for what a job cannot carry, naming it:
    passthrough fields, a ``stop`` list, tool-call histories, non-text content."""
    for key in request.passthrough:
        if key not in _NOT_SENT:
            raise InvalidRequest(f"{name}: the swarm cannot honour parameter {key!r}")
    params: dict[str, str | int | float] = {}
    for key, value in request.sampling.items():
        if key in _CLIENT_SAMPLING:
            continue
        if not isinstance(value, (str, int, float)):
            raise InvalidRequest(
                f"{name}: parameter {key!r} must be one string or number for the swarm "
                f"(a NIP-90 param), not {type(value).__name__}"
            )
        params[key] = value
    for key, value in (terms.job_params or {}).items():
        if key in params:
            raise InvalidRequest(f"{name}: parameter {key!r} is given twice")
        params[key] = value
    prompt: Prompt = request.prompt
    if not isinstance(prompt, str):
        for i, m in enumerate(prompt):
            if m.get("tool_calls") or m.get("role") == "tool":
                raise InvalidRequest(f"{name}: messages[{i}]: the swarm cannot take tool calls")
            content = m.get("content")
            if isinstance(content, list) and any(
                not isinstance(p, dict) or p.get("type") != "text" for p in content
            ):
                raise InvalidRequest(f"{name}: messages[{i}].content: the swarm takes text only")
    return params or None


def _comparator(
    name: str,
    prompt: str,
    judge: Callable[[str, str, str], float] | None = None,
    judge_options: Mapping[str, Any] | None = None,
) -> Comparator:
    from client.customer.quorum import comparator_by_name

    asks = judge is not None and name in ("auto", "judge")
    try:
        return comparator_by_name(
            name,
            prompt=prompt,
            judge=judge if asks else None,
            judge_options=judge_options if asks else None,
        )
    except (ValueError, KeyError, ImportError) as exc:
        raise InvalidRequest(f"comparator {name!r}: {exc}") from None
