"""Kind classes of NIP-01, which decide how the relay stores an event."""

from __future__ import annotations

from enum import Enum

DELETION = 5
AUTH = 22242


class KindClass(Enum):
    REGULAR = "regular"
    REPLACEABLE = "replaceable"
    EPHEMERAL = "ephemeral"
    ADDRESSABLE = "addressable"


def kind_class(kind: int) -> KindClass:
    """Kinds outside every NIP-01 range are kept like regular events (what deployed relays do)."""
    if kind == 0 or kind == 3 or 10000 <= kind < 20000:
        return KindClass.REPLACEABLE
    if 20000 <= kind < 30000:
        return KindClass.EPHEMERAL
    if 30000 <= kind < 40000:
        return KindClass.ADDRESSABLE
    return KindClass.REGULAR
