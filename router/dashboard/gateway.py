"""The gateway's dashboard (``swarm serve`` at ``/dashboard/``): its panels, who may see it, what
it reads, and its one action, revoking an API key.

- Reading: open while the gateway has no API keys; once it has some, the admin key only
  (``admin: {key_env: ...}``), both read at every request so a reload takes effect at once.
- What it reads: :func:`~router.dashboard.sources.gateway_probe` (traffic totals, breakers,
  spend), while somebody watches. Swarm requests add their jobs: the gateway gives each one a
  :class:`~router.dashboard.sources.ProgressTap` as its ``SwarmTerms.observer`` while the hub
  is live (:func:`swarm_observer`).
- ``POST /dashboard/actions/revoke_key`` with ``{"name"}`` (admin only): the admin API's
  revoke (router/gateway/admin.py). Keys of the config file are refused (409), as on
  ``DELETE /admin/keys/{name}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..gateway.errors import ApiError
from ..types import Prompt, prompt_text
from .access import DashboardAccess
from .hub import DashboardHub, Panel
from .sources import ProgressTap, gateway_probe
from .web import Action, ActionError, DashboardApp

if TYPE_CHECKING:
    from ..gateway.app import Gateway

#: The panels of a gateway with a swarm backend, and of one without.
SWARM_PANELS: tuple[Panel, ...] = ("jobs", "money", "latency", "traffic", "breakers", "keys")
PLAIN_PANELS: tuple[Panel, ...] = ("latency", "traffic", "breakers", "keys")


class RevokeKey(BaseModel):
    """The body of ``revoke_key``: the API key's name."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


def gateway_dashboard(gateway: Gateway, *, swarm: bool) -> DashboardApp:
    """The dashboard of ``gateway`` (``swarm``: it has a swarm backend, so jobs and money are
    shown)."""
    hub = DashboardHub(title="swarm serve", panels=SWARM_PANELS if swarm else PLAIN_PANELS)
    app: DashboardApp | None = None

    async def revoke(body: RevokeKey) -> dict[str, Any]:
        admin = gateway.admin
        if admin is None:
            raise ActionError(
                409, "this gateway has no admin API (admin: {key_env: ...})", "no_admin"
            )
        try:
            answer = admin.revoke(body.name)
        except ApiError as exc:
            raise ActionError(exc.status, exc.message, exc.code or "action_failed") from None
        if app is not None:
            app.refresh()  # the keys table shows it at once, not at the next tick
        return answer

    app = DashboardApp(
        hub,
        DashboardAccess(
            lambda: gateway.config.admin.key if gateway.config.admin is not None else None,
            require_key=lambda: gateway.keys.enabled,
        ),
        probes=[gateway_probe(gateway)],
        actions={"revoke_key": Action(RevokeKey, revoke, "Revoke a key")},
    )
    return app


def swarm_observer(hub: DashboardHub, model: str, quorum: int, prompt: Prompt) -> ProgressTap:
    """A swarm request's job on the jobs panel (build it only while ``hub.live``)."""
    return ProgressTap(hub, model=model, quorum=quorum, prompt=prompt_text(prompt))


__all__ = ["PLAIN_PANELS", "SWARM_PANELS", "RevokeKey", "gateway_dashboard", "swarm_observer"]
