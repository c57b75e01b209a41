"""Every error the Nostr side raises, in one module.

All derive from :class:`NostrSwarmError`, so a caller can catch the whole family; each says what
was wrong in its message. Parsing code never lets a bare KeyError/IndexError/ValueError escape.
"""

from __future__ import annotations

from typing import Any


class NostrSwarmError(Exception):
    """Base of every error raised by nostr-swarm."""


# --- protocol core -------------------------------------------------------------------------


class ProtocolError(NostrSwarmError, ValueError):
    """Input that does not follow the protocol (a ValueError, so generic handlers still work)."""


class InvalidKey(ProtocolError):
    """A secret or public key that is malformed or not a valid secp256k1 key."""


class Bech32Error(ProtocolError):
    """A NIP-19 string that does not decode: bad checksum, wrong prefix, bad TLV, too long."""


class InvalidEvent(ProtocolError):
    """An event whose structure or field types are wrong."""


class InvalidId(InvalidEvent):
    """An event whose id is not the sha256 of its canonical serialization."""


class InvalidSignature(InvalidEvent):
    """An event whose BIP-340 signature does not verify for its id and pubkey."""


class InvalidFilter(ProtocolError):
    """A REQ filter with unknown fields or wrong types."""


class InvalidMessage(ProtocolError):
    """A relay wire message (client->relay or relay->client) that cannot be parsed."""


class DecryptionError(ProtocolError):
    """A NIP-44 or NIP-04 payload that cannot be decrypted: bad version, MAC, padding, base64."""


class EncryptionError(ProtocolError):
    """A plaintext that cannot be encrypted (empty, too long, not encodable)."""


# --- relays and jobs -----------------------------------------------------------------------


class RelayError(NostrSwarmError):
    """A relay could not be reached or refused what we sent."""


class PublishError(RelayError):
    """An event was not accepted by any relay. ``results`` maps relay URL -> (ok, message)."""

    def __init__(self, message: str, results: dict[str, tuple[bool, str]] | None = None) -> None:
        super().__init__(message)
        self.results = results or {}


class JobError(NostrSwarmError):
    """A NIP-90 job request, result or feedback that is malformed or not ours."""


class QuorumNotReached(NostrSwarmError):
    """Time ran out (or every provider answered) before k results agreed.

    ``received`` holds everything that did arrive, so the caller can still inspect it.
    """

    def __init__(self, message: str, received: Any = None, decision: Any = None) -> None:
        super().__init__(message)
        self.received = received if received is not None else []
        self.decision = decision


class NoProvidersAvailable(NostrSwarmError):
    """No provider could be asked (none known, all blocked, or none matched the policy)."""


# --- money ---------------------------------------------------------------------------------


class PaymentError(NostrSwarmError):
    """A payment was refused or failed."""


class BudgetExceeded(PaymentError):
    """Paying would exceed a bid, quote, per-job or per-day budget."""


class InvoiceError(PaymentError):
    """A BOLT11 invoice that is malformed, expired, for another network or for a wrong amount."""


class WalletError(PaymentError):
    """A wallet answered with an error. ``code`` holds the NIP-47 error code when there is one."""

    def __init__(self, message: str, code: str = "OTHER") -> None:
        super().__init__(message)
        self.code = code


class WalletTimeout(WalletError):
    """The wallet did not answer in time; the outcome of the request is unknown."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="TIMEOUT")


class InsufficientBalance(WalletError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="INSUFFICIENT_BALANCE")


# --- money: more specific cases (appended with the wallet package) -------------------------


class InvoiceExpired(InvoiceError):
    """The invoice's expiry (timestamp + x field) has passed, or is too close to pay safely."""


class WrongNetwork(InvoiceError):
    """The invoice is for another Bitcoin network than the wallet's (e.g. mainnet vs regtest)."""


class PaymentFailed(WalletError):
    """The wallet tried and the payment did not go through (NIP-47 ``PAYMENT_FAILED``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="PAYMENT_FAILED")


class InvoiceNotFound(WalletError):
    """The wallet knows no invoice or payment with that hash (NIP-47 ``NOT_FOUND``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="NOT_FOUND")


class WalletUnauthorized(WalletError):
    """The wallet refused this connection (NIP-47 ``UNAUTHORIZED`` or ``RESTRICTED``)."""

    def __init__(self, message: str, code: str = "UNAUTHORIZED") -> None:
        super().__init__(message, code=code)


class WalletUnavailable(WalletError):
    """The wallet (or every relay to it) went away; a request in flight has an unknown outcome."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="UNAVAILABLE")


# --- NIP-90 input refused (appended by the client/NIP-90 work) -----------------------------


class JobRejected(JobError):
    """A job request, result or feedback that was refused. ``reason`` is a short code for counting
    (``forged``, ``other_job``, ``other_customer``, ``wrong_provider``, ``bad_request_tag``,
    ``oversized``, ``malformed``, ``stale``, ``decrypt``, ``wrong_kind``, ``expired``,
    ``unsupported_input``, ``not_for_us``)."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


# --- discovery and reputation (appended by the discovery work) ------------------------------


class InvalidAnnouncement(ProtocolError):
    """A NIP-89 handler announcement (kind 31990) that does not describe a kind-5050 provider:
    wrong kind, no ``k`` 5050 tag, content that is not a JSON object, fields of the wrong type."""


class ReputationError(NostrSwarmError):
    """The reputation ledger cannot be opened or used (unreadable file, wrong schema)."""


__all__ = [
    "Bech32Error",
    "BudgetExceeded",
    "DecryptionError",
    "EncryptionError",
    "InsufficientBalance",
    "InvalidAnnouncement",
    "InvalidEvent",
    "InvalidFilter",
    "InvalidId",
    "InvalidKey",
    "InvalidMessage",
    "InvalidSignature",
    "InvoiceError",
    "InvoiceExpired",
    "InvoiceNotFound",
    "JobError",
    "JobRejected",
    "NoProvidersAvailable",
    "NostrSwarmError",
    "PaymentError",
    "PaymentFailed",
    "ProtocolError",
    "PublishError",
    "QuorumNotReached",
    "RelayError",
    "ReputationError",
    "WalletError",
    "WalletTimeout",
    "WalletUnauthorized",
    "WalletUnavailable",
    "WrongNetwork",
]
