"""Gateway API keys (``Authorization: Bearer <key>``) and their budgets in sats and USD.

Keys are looked up by their SHA-256, so the lookup time does not depend on how much of a guessed
key matches. Budgets are checked before a request and charged after it with what the router
reports the request cost. A request that may spend sats (a swarm job) first reserves the most it
can spend (``quorum * bid``), so concurrent requests cannot together overspend a key; its bid is
lowered to fit what is left. Spending is kept in memory: it starts again at zero on restart.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

from .config import ApiKeyConfig
from .errors import ApiError


@dataclass(slots=True)
class KeyAccount:
    """One key's budgets and what it has spent."""

    name: str
    budget_sats: int | None = None
    budget_usd: float | None = None
    spent_sats: int = 0
    spent_usd: float = 0.0
    reserved_sats: int = 0
    requests: int = 0

    def remaining_sats(self) -> float:
        if self.budget_sats is None:
            return math.inf
        return self.budget_sats - self.spent_sats - self.reserved_sats

    def report(self) -> dict[str, object]:
        return {
            "name": self.name,
            "requests": self.requests,
            "spent_sats": self.spent_sats,
            "spent_usd": self.spent_usd,
            "reserved_sats": self.reserved_sats,
            "budget_sats": self.budget_sats,
            "budget_usd": self.budget_usd,
        }


def _over_budget(message: str) -> ApiError:
    return ApiError(429, message, type="insufficient_quota", code="insufficient_quota")


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="invalid_api_key")


class KeyStore:
    """The configured keys. With no keys configured the gateway is open (``enabled`` False)."""

    __slots__ = ("_by_hash", "accounts")

    def __init__(self, keys: Iterable[ApiKeyConfig]) -> None:
        self._by_hash: dict[bytes, KeyAccount] = {}
        self.accounts: dict[str, KeyAccount] = {}
        for k in keys:
            acct = KeyAccount(k.name, k.budget_sats, k.budget_usd)
            self._by_hash[hashlib.sha256((k.key or "").encode()).digest()] = acct
            self.accounts[k.name] = acct

    @property
    def enabled(self) -> bool:
        return bool(self._by_hash)

    def authenticate(self, authorization: str | None) -> KeyAccount | None:
        """The account for an ``Authorization`` header; None when the gateway is open.
        Raises ApiError 401 for a missing or unknown key."""
        if not self._by_hash:
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

    @staticmethod
    def admit(acct: KeyAccount, want_sats: int = 0, quorum: int = 1) -> int:
        """Check the key's budgets before a request; reserve sats for one that may spend them.

        ``want_sats`` is the bid per provider and ``quorum`` how many may be paid. Returns the bid
        to use (``want_sats`` lowered to what the budget has left), reserved until
        :meth:`settle`. Raises ApiError 429 when a budget is used up.
        """
        if acct.budget_usd is not None and acct.spent_usd >= acct.budget_usd:
            raise _over_budget(
                f"API key '{acct.name}' has used its budget: spent ${acct.spent_usd:.6f} "
                f"of ${acct.budget_usd:.6f}"
            )
        left = acct.remaining_sats()
        if left <= 0:
            raise _over_budget(
                f"API key '{acct.name}' has used its budget: spent {acct.spent_sats} of "
                f"{acct.budget_sats} sats"
                + (
                    f" ({acct.reserved_sats} reserved by requests in flight)"
                    if acct.reserved_sats
                    else ""
                )
            )
        bid = want_sats
        if want_sats > 0 and left != math.inf:
            per_provider = int(left // max(1, quorum))
            if per_provider < 1:
                raise _over_budget(
                    f"API key '{acct.name}' has {int(left)} sats left, not enough for a quorum "
                    f"of {quorum} at 1 sat each"
                )
            bid = min(want_sats, per_provider)
            acct.reserved_sats += bid * max(1, quorum)
        acct.requests += 1
        return bid

    @staticmethod
    def settle(
        acct: KeyAccount,
        reserved_bid: int,
        quorum: int,
        cost_sats: int | None,
        cost_usd: float | None,
    ) -> None:
        """Release the reservation made by :meth:`admit` and charge what the request cost."""
        if reserved_bid > 0 and acct.budget_sats is not None:
            acct.reserved_sats -= reserved_bid * max(1, quorum)
        if cost_sats:
            acct.spent_sats += cost_sats
        if cost_usd:
            acct.spent_usd += cost_usd

    def report(self) -> list[dict[str, object]]:
        return [a.report() for a in self.accounts.values()]
