"""Gateway API keys (``Authorization: Bearer <key>``) and their budgets in sats and USD.

Keys are looked up by their SHA-256, so the lookup time does not depend on how much of a guessed
key matches. Spend lives in the gateway's durable :class:`~router.spend.SpendBook` (account
``key:<name>``): every request first reserves the most it may cost on its key (and, for the
swarm, on the swarm's budget) in one transaction, then is charged what it really cost; so
concurrent requests cannot together overspend a key, and spend survives restarts.
:meth:`KeyStore.reserve` does that admission: a swarm request's bid is lowered to what the
budgets have left, and a budget that is used up answers 429.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..spend import USD_NANOS, Hold, OverBudget, SpendBook, usd_to_nanos
from .config import ApiKeyConfig, period_seconds
from .errors import ApiError
from .key_limits import KeyGate, KeyLimits
from .shared_limits import SharedCounters


@dataclass(slots=True)
class KeyAccount:
    """One key: its name and budgets; what it spent is read from the spend book."""

    name: str
    budget_sats: int | None
    budget_usd: float | None
    book: SpendBook
    gate: KeyGate
    budget_period: str | None = None

    @property
    def account(self) -> str:
        return key_account(self.name)

    @property
    def spent_sats(self) -> int:
        return self.book.status(self.account).spent_msats // 1000

    @property
    def spent_usd(self) -> float:
        return self.book.status(self.account).spent_usd_nanos / USD_NANOS

    @property
    def reserved_sats(self) -> int:
        st = self.book.status(self.account)
        return -(-(st.reserved_msats + st.pending_msats) // 1000)

    def report(self) -> dict[str, object]:
        st = self.book.status(self.account)
        return {
            "name": self.name,
            "requests": st.requests,
            "spent_sats": st.spent_msats // 1000,
            "spent_msats": st.spent_msats,
            "spent_usd": st.spent_usd_nanos / USD_NANOS,
            "reserved_sats": -(-st.reserved_msats // 1000),
            "pending_sats": -(-st.pending_msats // 1000),
            "budget_sats": self.budget_sats,
            "budget_usd": self.budget_usd,
            "budget_period": self.budget_period,
            "models": list(self.gate.limits.models) if self.gate.limits.models else None,
            "rpm": self.gate.limits.rpm,
            "tpm": self.gate.limits.tpm,
            "max_parallel": self.gate.limits.max_parallel,
            "in_flight": self.gate.in_flight,
        }


def key_account(name: str) -> str:
    return f"key:{name}"


def _who(account: str) -> str:
    kind, _, name = account.partition(":")
    return f"API key '{name}'" if kind == "key" else f"the {name!r} swarm budget"


def over_budget(message: str) -> ApiError:
    return ApiError(429, message, type="insufficient_quota", code="insufficient_quota")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key")


class KeyStore:
    """The configured keys. With no keys configured the gateway is open (``enabled`` False)."""

    __slots__ = ("_always", "_by_hash", "accounts", "book", "shared")

    def __init__(
        self,
        keys: Iterable[ApiKeyConfig],
        book: SpendBook | None = None,
        shared: SharedCounters | None = None,
    ) -> None:
        self.book = book if book is not None else SpendBook(":memory:")
        self.shared = shared
        self._always = False
        self._by_hash: dict[bytes, KeyAccount] = {}
        self.accounts: dict[str, KeyAccount] = {}
        for k in keys:
            self.add(k)

    def add(self, k: ApiKeyConfig, key_digest: bytes | None = None) -> KeyAccount:
        """Add (or replace) one key; its spend in the book is kept under its name.
        ``key_digest``: the key's SHA-256 when only that is known (keys made by the admin
        API), instead of ``k.key``."""
        old = self.accounts.get(k.name)
        if old is not None:
            self.remove(k.name)
        limits = KeyLimits(tuple(k.models) if k.models else None, k.rpm, k.tpm, k.max_parallel)
        gate = KeyGate(k.name, limits, self.shared)
        if old is not None:  # requests in flight keep their slots across a rotation
            gate.in_flight = old.gate.in_flight
        acct = KeyAccount(k.name, k.budget_sats, k.budget_usd, self.book, gate, k.budget_period)
        self.book.ensure(
            acct.account,
            budget_msats=None if k.budget_sats is None else k.budget_sats * 1000,
            budget_usd_nanos=usd_to_nanos(k.budget_usd),
            period_s=period_seconds(k.budget_period) if k.budget_period else None,
        )
        if key_digest is None:
            key_digest = hashlib.sha256((k.key or "").encode()).digest()
        self._by_hash[key_digest] = acct
        self.accounts[k.name] = acct
        return acct

    def remove(self, name: str) -> bool:
        """Revoke a key at once (its spend stays in the book)."""
        acct = self.accounts.pop(name, None)
        if acct is None:
            return False
        for h, a in list(self._by_hash.items()):
            if a is acct:
                del self._by_hash[h]
        return True

    @property
    def enabled(self) -> bool:
        return bool(self._by_hash) or self._always

    def require_keys(self) -> None:
        """Keep the gateway closed even with no key left (an admin key is configured)."""
        self._always = True

    def authenticate(self, authorization: str | None) -> KeyAccount | None:
        """The account for an ``Authorization`` header; None when the gateway is open.
        Raises ApiError 401 for a missing or unknown key."""
        if not self.enabled:
            return None
        if not authorization:
            raise unauthorized(
                "You didn't provide an API key: send it as 'Authorization: Bearer <key>'"
            )
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise unauthorized("The Authorization header must be 'Bearer <key>'")
        acct = self._by_hash.get(hashlib.sha256(key.strip().encode()).digest())
        if acct is None:
            raise unauthorized("Incorrect API key provided")
        return acct

    def reserve(
        self,
        accounts: Sequence[str],
        *,
        bid_sats: int = 0,
        quorum: int = 1,
        msats: int = 0,
        usd_nanos: int = 0,
        label: str = "",
        who: str = "",
        model: str = "",
    ) -> tuple[Hold, int]:
        """Reserve one request's most on every account. A swarm request (``bid_sats`` > 0) holds
        ``quorum * bid`` sats, the bid lowered to what the budgets have left; otherwise
        ``msats`` and ``usd_nanos`` are held. Returns the hold and the bid to use; raises
        ApiError 429 when a budget cannot cover the request."""
        q = max(1, quorum)
        bid = bid_sats
        if bid_sats > 0:
            tightest = self._tightest(accounts)
            if tightest is not None:
                name, left = tightest
                per_provider = left // 1000 // q
                if per_provider < 1:
                    raise over_budget(
                        f"{_who(name)} has {left // 1000} sats left, not enough for a quorum "
                        f"of {q} at 1 sat each"
                    )
                bid = min(bid_sats, per_provider)
            msats = max(msats, bid * q * 1000)
        try:
            hold = self.book.reserve(
                accounts, msats=msats, usd_nanos=usd_nanos, label=label, who=who, model=model
            )
            return hold, bid
        except OverBudget as exc:
            raise over_budget(f"{_who(exc.account)} is over budget: {exc}") from None

    def _tightest(self, accounts: Sequence[str]) -> tuple[str, int] | None:
        """The account with the fewest msats left, and how many (None: no sats budget)."""
        best: tuple[str, int] | None = None
        for a in accounts:
            left = self.book.status(a).remaining_msats
            if left is not None and (best is None or left < best[1]):
                best = (a, left)
        return best

    def report(self) -> list[dict[str, object]]:
        return [a.report() for a in self.accounts.values()]
