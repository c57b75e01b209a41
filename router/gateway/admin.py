"""The admin API on ``/admin/*`` (``Authorization: Bearer <admin key>``):

- ``POST /admin/keys`` with ``{"name", "models"?, "rpm"?, "tpm"?, "max_parallel"?,
  "budget_sats"?, "budget_usd"?, "budget_period"?}`` makes a key: ``{"name", "key"}`` (the
  secret, shown only now);
- ``GET /admin/keys`` lists every key (config and admin-made) without secrets, with spend;
- ``POST /admin/keys/{name}/rotate`` answers a new ``key``; the old one stops working at once;
- ``DELETE /admin/keys/{name}`` revokes a key;
- ``GET /admin/spend`` gives spend per key and model, and per budget account.

Admin-made keys persist in the gateway's state file; keys from the config file are listed but
cannot be rotated or revoked here (edit the file and reload).
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..spend import USD_NANOS
from .config import ApiKeyConfig
from .errors import ApiError
from .http_server import HttpRequest, HttpResponse
from .key_db import SPEC_FIELDS, KeyRecords, digest

if TYPE_CHECKING:
    from .auth import KeyStore

_JSON = {"Content-Type": "application/json"}
_KEYS = "/admin/keys"


def _ok(obj: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(obj).encode(), status, dict(_JSON))


class AdminApi:
    """Serves ``/admin/*`` for one gateway."""

    def __init__(
        self, admin_key: str, keys: KeyStore, records: KeyRecords, config_names: set[str]
    ) -> None:
        self._digest = digest(admin_key)
        self.keys = keys
        self.records = records
        self.config_names = config_names
        for name, key_digest, spec in records.all():
            if name in config_names:
                continue  # the config file wins for its names
            self.keys.add(_config(name, spec), key_digest)

    def _authorized(self, request: HttpRequest) -> None:
        header = request.headers.get("authorization") or ""
        scheme, _, key = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(digest(key.strip()), self._digest)
        if not ok:
            raise ApiError(
                401,
                "the admin API needs 'Authorization: Bearer <admin key>'",
                code="invalid_admin_key",
            )

    async def handle(self, request: HttpRequest) -> HttpResponse:
        try:
            self._authorized(request)
            return self._route(request)
        except ApiError as err:
            return HttpResponse(
                json.dumps(err.body()).encode(), err.status, {**_JSON, **(err.headers or {})}
            )

    def _route(self, request: HttpRequest) -> HttpResponse:
        path, method = request.path.rstrip("/"), request.method
        if path == _KEYS:
            if method == "GET":
                return self._list()
            if method == "POST":
                return self._create(request)
            raise ApiError(405, f"{method} is not allowed on {path}", code="method_not_allowed")
        if path == "/admin/spend" and method == "GET":
            return self._spend()
        if path.startswith(_KEYS + "/"):
            rest = path[len(_KEYS) + 1 :]
            if rest.endswith("/rotate") and method == "POST":
                return self._rotate(rest[: -len("/rotate")])
            if "/" not in rest and method == "DELETE":
                return self._delete(rest)
        raise ApiError(404, f"No admin endpoint {method} {path}", code="unknown_url")

    def _body(self, request: HttpRequest) -> dict[str, Any]:
        try:
            body = json.loads(request.body.decode() or "null")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError(400, "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def _create(self, request: HttpRequest) -> HttpResponse:
        body = self._body(request)
        name = body.get("name")
        unknown = sorted(set(body) - {"name", *SPEC_FIELDS})
        if unknown:
            raise ApiError(
                400,
                f"unknown field(s) {', '.join(unknown)}; known: name, " + ", ".join(SPEC_FIELDS),
                param=unknown[0],
            )
        spec = {k: body[k] for k in SPEC_FIELDS if body.get(k) is not None}
        if not isinstance(name, str):
            raise ApiError(400, "name is required (a string)", param="name")
        cfg = _config(name, spec)  # validates every field (400 below)
        if name in self.keys.accounts or name in self.config_names:
            raise ApiError(409, f"a key named {name!r} exists", code="key_exists")
        secret = self.records.create(name, spec)
        if secret is None:
            raise ApiError(409, f"a key named {name!r} exists", code="key_exists")
        self.keys.add(cfg, digest(secret))
        return _ok({"name": name, "key": secret, **spec}, 201)

    def _rotate(self, name: str) -> HttpResponse:
        self._admin_made(name)
        secret = self.records.rotate(name)
        if secret is None:
            raise ApiError(404, f"no key named {name!r}", code="key_not_found")
        spec = next(s for n, _, s in self.records.all() if n == name)
        self.keys.add(_config(name, spec), digest(secret))
        return _ok({"name": name, "key": secret})

    def _delete(self, name: str) -> HttpResponse:
        return _ok(self.revoke(name))

    def revoke(self, name: str) -> dict[str, Any]:
        """Revoke a key this API made (its spend stays on record): ``{"name", "revoked"}``.
        ApiError 409 for a key of the config file, 404 for no such key."""
        self._admin_made(name)
        if not self.records.delete(name):
            raise ApiError(404, f"no key named {name!r}", code="key_not_found")
        self.keys.remove(name)
        return {"name": name, "revoked": True}

    def _admin_made(self, name: str) -> None:
        if name in self.config_names:
            raise ApiError(
                409,
                f"key {name!r} is defined in the config file: edit the file and reload",
                code="key_in_config",
            )

    def _list(self) -> HttpResponse:
        made = {n for n, _, _ in self.records.all()}
        keys = []
        for name, acct in sorted(self.keys.accounts.items()):
            row = acct.report()
            row["source"] = "admin" if name in made else "config"
            keys.append(row)
        return _ok({"object": "list", "data": keys})

    def _spend(self) -> HttpResponse:
        book = self.keys.book
        by_key: dict[str, dict[str, Any]] = {}
        for who, model, n, msats, pending, usd in book.spend_by():
            entry = by_key.setdefault(who or "(no key)", {})
            entry[model] = {
                "requests": n,
                "spent_msats": msats,
                "pending_msats": pending,
                "spent_usd": usd / USD_NANOS,
            }
        accounts = {
            st.name: {
                "spent_msats": st.spent_msats,
                "spent_usd": st.spent_usd_nanos / USD_NANOS,
                "reserved_msats": st.reserved_msats,
                "pending_msats": st.pending_msats,
                "budget_msats": st.budget_msats,
                "budget_usd": None
                if st.budget_usd_nanos is None
                else st.budget_usd_nanos / USD_NANOS,
            }
            for st in book.statuses()
        }
        return _ok({"object": "spend", "by_key": by_key, "accounts": accounts})


def _config(name: str, spec: dict[str, Any]) -> ApiKeyConfig:
    """A key's settings as the config schema checks them (the secret is not needed here)."""
    try:
        return ApiKeyConfig.model_validate({"name": name, "key": "-", **spec})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or None
        raise ApiError(400, f"{where}: {first.get('msg')}", param=where) from None
