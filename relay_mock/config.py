"""Settings of the relay: limits in force (stated in NIP-11), fault switches, self-description."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """What one connection may do. ``None`` switches a limit off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_message_length: int = Field(256 * 1024, gt=0, description="bytes of one websocket frame")
    max_subscriptions: int = Field(50, gt=0, description="open subscriptions per connection")
    max_filters: int = Field(20, gt=0, description="filters in one REQ or COUNT")
    max_filter_values: int = Field(
        2000, gt=0, description="values one filter lists (ids, authors, kinds, tag values)"
    )
    max_connections: int = Field(2048, gt=0, description="open websocket connections in all")
    max_connections_per_ip: int = Field(
        512, gt=0, description="open websocket connections from one address"
    )
    max_limit: int = Field(5000, gt=0, description="most stored events one filter returns")
    default_limit: int | None = Field(None, gt=0, description="limit for filters without one")
    max_subid_length: int = Field(64, gt=0, le=64)
    max_event_tags: int = Field(2500, gt=0)
    max_content_length: int = Field(128 * 1024, gt=0, description="unicode characters")
    event_rate: float | None = Field(
        None, gt=0, description="events per second one connection may publish (token bucket)"
    )
    event_burst: int | None = Field(None, gt=0, description="bucket size; defaults to the rate")
    created_at_lower_limit: int | None = Field(
        None, ge=0, description="refuse events older than now minus this many seconds"
    )
    created_at_upper_limit: int | None = Field(
        None, ge=0, description="refuse events newer than now plus this many seconds"
    )
    # Frames beyond this close the connection (1009); frames between max_message_length and this
    # are read and refused with a reason, so the connection survives ordinary oversize mistakes.
    hard_frame_limit: int = Field(4 * 1024 * 1024, gt=0)
    # Bytes written to one connection and not yet taken by its reader. Stored results go out
    # while less than half of it is used (the rest is room for live events and replies); a live
    # event that would pass it ends its subscription with CLOSED "error: slow consumer ...".
    max_write_buffer: int = Field(2 * 1024 * 1024, gt=0)


class Faults(BaseModel):
    """Misbehaviour on purpose, for reliability tests. Assign fields while the relay runs."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    latency: float = Field(0.0, ge=0, description="seconds added before each outgoing message")
    drop_rate: float = Field(0.0, ge=0, le=1, description="chance that an outgoing message is lost")
    drop_verbs: frozenset[str] | None = Field(
        None, description="only drop these verbs (OK, EVENT, EOSE, ...); None drops any"
    )
    disconnect_after: int | None = Field(
        None, gt=0, description="cut each connection after it has sent this many messages"
    )
    disconnect_mode: Literal["close", "abort"] = Field(
        "close", description="close: replies flushed then a close frame; abort: TCP reset"
    )
    refuse_kinds: frozenset[int] = Field(
        frozenset(), description="events of these kinds get OK false 'blocked:'"
    )

    def reset(self) -> None:
        """Back to a well-behaved relay."""
        for name, field in type(self).model_fields.items():
            setattr(self, name, field.default)


class RelayInfo(BaseModel):
    """Self-description served in the NIP-11 document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "nostr-swarm relay_mock"
    description: str = "A NIP-01 relay for tests, demos and local development."
    pubkey: str | None = None
    contact: str | None = None
    software: str = "https://github.com/nostr-swarm/nostr-swarm"
    version: str = "0.1.0"
