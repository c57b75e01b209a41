"""The NIP-11 relay information document. Pure: built from the settings in force."""

from __future__ import annotations

from typing import Any

from .config import Faults, Limits, RelayInfo

SUPPORTED_NIPS = [1, 9, 11, 40, 42, 45]


def info_document(
    info: RelayInfo,
    limits: Limits,
    faults: Faults,
    *,
    auth_required: bool,
    restricted_writes: bool,
) -> dict[str, Any]:
    limitation: dict[str, Any] = {
        "max_message_length": limits.max_message_length,
        "max_subscriptions": limits.max_subscriptions,
        "max_filters": limits.max_filters,
        "max_limit": limits.max_limit,
        "max_subid_length": limits.max_subid_length,
        "max_event_tags": limits.max_event_tags,
        "max_content_length": limits.max_content_length,
        "min_pow_difficulty": 0,
        "auth_required": auth_required,
        "payment_required": False,
        "restricted_writes": restricted_writes or bool(faults.refuse_kinds),
    }
    if limits.default_limit is not None:
        limitation["default_limit"] = limits.default_limit
    if limits.created_at_lower_limit is not None:
        limitation["created_at_lower_limit"] = limits.created_at_lower_limit
    if limits.created_at_upper_limit is not None:
        limitation["created_at_upper_limit"] = limits.created_at_upper_limit
    # Not in NIP-11 (nor max_filters, from an earlier draft of it): stated for clients that read
    # them, under names other relays use.
    limitation["max_filter_values"] = limits.max_filter_values
    limitation["max_connections"] = limits.max_connections
    limitation["max_connections_per_ip"] = limits.max_connections_per_ip
    if limits.event_rate is not None:
        limitation["max_event_rate"] = limits.event_rate
    doc: dict[str, Any] = {
        "name": info.name,
        "description": info.description,
        "supported_nips": SUPPORTED_NIPS,
        "software": info.software,
        "version": info.version,
        "limitation": limitation,
    }
    if info.pubkey:
        doc["pubkey"] = info.pubkey
    if info.contact:
        doc["contact"] = info.contact
    return doc
