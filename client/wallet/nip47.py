"""NIP-47 Nostr Wallet Connect, the protocol only (no I/O): connection URIs, the info event,
request/response events with NIP-44 v2 or NIP-04 content, and error codes <-> typed errors.

Used by both ends: :mod:`.nwc` (the client) and :mod:`.service` (our local wallet service).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, quote, urlsplit

from client.nostr import nip04, nip44
from client.nostr.errors import (
    DecryptionError,
    EncryptionError,
    InsufficientBalance,
    InvalidKey,
    InvoiceNotFound,
    PaymentFailed,
    WalletError,
    WalletUnauthorized,
)
from client.nostr.event import Event
from client.nostr.keys import Keys

INFO_KIND: Final = 13194
REQUEST_KIND: Final = 23194
RESPONSE_KIND: Final = 23195
NOTIFICATION_KIND: Final = 23197
LEGACY_NOTIFICATION_KIND: Final = 23196

NIP44: Final = "nip44_v2"
NIP04: Final = "nip04"
SUPPORTED_ENCRYPTIONS: Final = (NIP44, NIP04)  # in order of preference

SCHEME: Final = "nostr+walletconnect"
MAX_CONTENT: Final = 256 * 1024  # far above any NIP-47 payload; refuse bigger before decrypting

ERROR_CODES: Final = frozenset(
    {
        "RATE_LIMITED",
        "NOT_IMPLEMENTED",
        "INSUFFICIENT_BALANCE",
        "QUOTA_EXCEEDED",
        "RESTRICTED",
        "UNAUTHORIZED",
        "INTERNAL",
        "UNSUPPORTED_ENCRYPTION",
        "PAYMENT_FAILED",
        "NOT_FOUND",
        "OTHER",
    }
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


# --- connection URI ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NwcUri:
    """``nostr+walletconnect://<wallet pubkey>?relay=<url>[&relay=…]&secret=<hex>[&lud16=…]``."""

    wallet_pubkey: str
    relays: tuple[str, ...]
    secret: str
    lud16: str | None = None

    @classmethod
    def parse(cls, text: object) -> NwcUri:
        if not isinstance(text, str):
            raise WalletError("connection URI must be a string", code="INVALID_URI")
        raw = text.strip()
        prefix = raw.split("://", 1)[0].lower() if "://" in raw else ""
        if prefix not in (SCHEME, "nostrwalletconnect"):
            raise WalletError(
                f"connection URI must start with {SCHEME}:// (got {raw[:24]!r}…)",
                code="INVALID_URI",
            )
        parts = urlsplit("x://" + raw.split("://", 1)[1])
        pubkey = (parts.netloc or parts.path.strip("/")).lower()
        if not _HEX64.fullmatch(pubkey):
            raise WalletError(
                "connection URI: wallet pubkey must be 64 hex characters", code="INVALID_URI"
            )
        query = parse_qs(parts.query, keep_blank_values=True)
        relays = tuple(dict.fromkeys(r.strip() for r in query.get("relay", []) if r.strip()))
        if not relays:
            raise WalletError("connection URI has no relay", code="INVALID_URI")
        for r in relays:
            if not r.startswith(("ws://", "wss://")):
                raise WalletError(
                    f"connection URI relay {r!r} is not ws:// or wss://", code="INVALID_URI"
                )
        secrets = query.get("secret", [])
        if len(secrets) != 1 or not _HEX64.fullmatch(secrets[0].lower()):
            raise WalletError("connection URI: secret must be one 64-hex value", code="INVALID_URI")
        try:
            Keys.from_secret(secrets[0].lower())
        except InvalidKey as exc:
            raise WalletError(f"connection URI: bad secret ({exc})", code="INVALID_URI") from None
        lud16 = (query.get("lud16") or [""])[0] or None
        return cls(pubkey, relays, secrets[0].lower(), lud16)

    def to_string(self) -> str:
        query = "&".join(f"relay={quote(r, safe='')}" for r in self.relays)
        query += f"&secret={self.secret}"
        if self.lud16:
            query += f"&lud16={quote(self.lud16, safe='@')}"
        return f"{SCHEME}://{self.wallet_pubkey}?{query}"

    @property
    def client_keys(self) -> Keys:
        return Keys.from_secret(self.secret)

    def __repr__(self) -> str:  # never print the secret by accident
        return f"NwcUri(wallet_pubkey={self.wallet_pubkey[:16]}…, relays={self.relays})"


# --- info event --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WalletInfo:
    methods: frozenset[str]
    encryptions: tuple[str, ...]
    notifications: frozenset[str]


def parse_info_event(event: Event) -> WalletInfo:
    """Methods from the content, schemes from the ``encryption`` tag (absent: NIP-04 only)."""
    if event.kind != INFO_KIND:
        raise WalletError(f"not a NIP-47 info event (kind {event.kind})")
    methods = frozenset(m for m in event.content.split() if m)
    enc_tag = event.tag_value("encryption")
    encryptions = tuple(e for e in enc_tag.split() if e) if enc_tag else (NIP04,)
    notif = event.tag_value("notifications")
    return WalletInfo(methods, encryptions, frozenset((notif or "").split()))


def choose_encryption(info: WalletInfo | None) -> str:
    """NIP-44 v2 when the wallet offers it, NIP-04 when that is all it offers.

    A wallet without an info event is treated like one without an ``encryption`` tag (NIP-04)."""
    offered = info.encryptions if info is not None else (NIP04,)
    for scheme in SUPPORTED_ENCRYPTIONS:
        if scheme in offered:
            return scheme
    raise WalletError(
        f"wallet offers only {', '.join(offered)}; we speak {', '.join(SUPPORTED_ENCRYPTIONS)}",
        code="UNSUPPORTED_ENCRYPTION",
    )


def build_info_event(
    keys: Keys,
    methods: Iterable[str],
    *,
    encryptions: Iterable[str] = SUPPORTED_ENCRYPTIONS,
    notifications: Iterable[str] = (),
    created_at: int | None = None,
) -> Event:
    tags = [["encryption", " ".join(encryptions)]]
    notes = " ".join(notifications)
    if notes:
        tags.append(["notifications", notes])
    return Event.create(keys, INFO_KIND, " ".join(methods), tags, created_at=created_at)


# --- content encryption ------------------------------------------------------------------------


def encrypt(scheme: str, plaintext: str, secret_hex: str, pubkey_hex: str) -> str:
    if scheme == NIP44:
        return nip44.encrypt(plaintext, nip44.conversation_key(secret_hex, pubkey_hex))
    if scheme == NIP04:
        return nip04.encrypt(plaintext, secret_hex, pubkey_hex)
    raise EncryptionError(f"unsupported encryption {scheme!r}")


def decrypt(scheme: str | None, payload: str, secret_hex: str, pubkey_hex: str) -> str:
    """Decrypt with ``scheme``; None: tell NIP-04 and NIP-44 apart by the payload's form."""
    if len(payload) > MAX_CONTENT:
        raise DecryptionError(f"content longer than {MAX_CONTENT} characters")
    if scheme is None:
        scheme = NIP04 if "?iv=" in payload else NIP44
    if scheme == NIP44:
        return nip44.decrypt(payload, nip44.conversation_key(secret_hex, pubkey_hex))
    if scheme == NIP04:
        return nip04.decrypt(payload, secret_hex, pubkey_hex)
    raise DecryptionError(f"unsupported encryption {scheme!r}")


def request_scheme(event: Event) -> str:
    """The scheme a request says it uses: its ``encryption`` tag, else NIP-04 (legacy clients)."""
    tag = event.tag_value("encryption")
    if tag is None:
        return (
            NIP04 if "?iv=" in event.content or not nip44.looks_like_nip44(event.content) else NIP44
        )
    return tag.strip()


# --- requests and responses --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Response:
    result_type: str
    result: dict[str, Any] | None
    error_code: str | None = None
    error_message: str | None = None

    def raise_for_error(self) -> dict[str, Any]:
        """The result, or the typed error the wallet reported."""
        if self.error_code is not None:
            raise error_from_code(self.error_code, self.error_message or "")
        if self.result is None:
            raise WalletError(f"wallet answered {self.result_type} with neither result nor error")
        return self.result


def build_request(
    client_keys: Keys,
    wallet_pubkey: str,
    method: str,
    params: Mapping[str, Any],
    *,
    scheme: str,
    created_at: int,
    expiration: int | None = None,
) -> Event:
    body = json.dumps({"method": method, "params": dict(params)}, separators=(",", ":"))
    tags = [["p", wallet_pubkey], ["encryption", scheme]]
    if expiration is not None:
        tags.append(["expiration", str(expiration)])
    content = encrypt(scheme, body, client_keys.secret_hex, wallet_pubkey)
    return Event.create(client_keys, REQUEST_KIND, content, tags, created_at=created_at)


def parse_request(event: Event, service_secret: str) -> tuple[Request, str]:
    """(request, scheme) from a 23194 event addressed to us; WalletError with a NIP-47 code."""
    scheme = request_scheme(event)
    if scheme not in SUPPORTED_ENCRYPTIONS:
        raise WalletError(f"encryption {scheme!r} is not supported", code="UNSUPPORTED_ENCRYPTION")
    try:
        body = json.loads(decrypt(scheme, event.content, service_secret, event.pubkey))
    except (DecryptionError, InvalidKey, ValueError, RecursionError) as exc:
        raise WalletError(f"cannot read the request: {exc}", code="OTHER") from None
    if not isinstance(body, dict) or not isinstance(body.get("method"), str):
        raise WalletError("request must be a JSON object with a string 'method'", code="OTHER")
    params = body.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise WalletError("request 'params' must be a JSON object", code="OTHER")
    return Request(body["method"], params), scheme


def build_response(
    service_keys: Keys,
    request: Event,
    *,
    scheme: str,
    result_type: str,
    result: Mapping[str, Any] | None = None,
    error: WalletError | None = None,
    created_at: int,
) -> Event:
    body: dict[str, Any] = {"result_type": result_type, "error": None, "result": None}
    if error is not None:
        code = error.code if error.code in ERROR_CODES else "OTHER"
        body["error"] = {"code": code, "message": str(error)}
    else:
        body["result"] = dict(result or {})
    content = encrypt(
        scheme, json.dumps(body, separators=(",", ":")), service_keys.secret_hex, request.pubkey
    )
    tags = [["p", request.pubkey], ["e", request.id]]
    return Event.create(service_keys, RESPONSE_KIND, content, tags, created_at=created_at)


def parse_response(
    event: Event, client_secret: str, wallet_pubkey: str, scheme: str | None
) -> Response:
    """Decrypt and validate a 23195 event; WalletError (code OTHER) when it is malformed."""
    if event.kind != RESPONSE_KIND or event.pubkey != wallet_pubkey:
        raise WalletError("not a response from this wallet")
    try:
        body = json.loads(decrypt(scheme, event.content, client_secret, wallet_pubkey))
    except (DecryptionError, InvalidKey, ValueError, RecursionError):
        try:  # a wallet may answer in the other scheme than we asked in
            body = json.loads(decrypt(None, event.content, client_secret, wallet_pubkey))
        except (DecryptionError, InvalidKey, ValueError, RecursionError) as exc:
            raise WalletError(f"cannot read the wallet's response: {exc}") from None
    if not isinstance(body, dict):
        raise WalletError("wallet response is not a JSON object")
    result_type = body.get("result_type")
    err = body.get("error")
    result = body.get("result")
    if err is not None:
        if not isinstance(err, dict):
            raise WalletError("wallet response 'error' is not an object")
        code = err.get("code")
        return Response(
            str(result_type or ""),
            None,
            code if isinstance(code, str) and code else "OTHER",
            str(err.get("message") or ""),
        )
    if result is not None and not isinstance(result, dict):
        raise WalletError("wallet response 'result' is not an object")
    return Response(str(result_type or ""), result)


_TYPED: Final[dict[str, type[WalletError]]] = {
    "INSUFFICIENT_BALANCE": InsufficientBalance,
    "PAYMENT_FAILED": PaymentFailed,
    "NOT_FOUND": InvoiceNotFound,
}


def error_from_code(code: str, message: str) -> WalletError:
    """The typed error for a NIP-47 error code (unknown codes keep their code on WalletError)."""
    text = f"{code}: {message}" if message else code
    if code in _TYPED:
        return _TYPED[code](text)
    if code in ("UNAUTHORIZED", "RESTRICTED"):
        return WalletUnauthorized(text, code=code)
    return WalletError(text, code=code)
