"""The live web dashboard: a pure aggregator (:mod:`.hub`) fed with typed events
(:mod:`.events`), its HTTP handlers and page (:mod:`.web`, ``static/``), who may see and act
(:mod:`.access`), and adapters from the project's objects (:mod:`.sources`). docs/dashboard.md
is the user's guide.
"""

from __future__ import annotations

from .access import AccessDenied, DashboardAccess
from .events import DashboardEvent, DashboardEventError
from .hub import DashboardHub, TooManyViewers
from .web import Action, ActionError, DashboardApp, serve_dashboard

__all__ = [
    "AccessDenied",
    "Action",
    "ActionError",
    "DashboardAccess",
    "DashboardApp",
    "DashboardEvent",
    "DashboardEventError",
    "DashboardHub",
    "TooManyViewers",
    "serve_dashboard",
]
