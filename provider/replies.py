"""The node's result event (kind 6050), with our usage and model tags and the optional sealed
content. Feedback uses ``client.dvm.nip90.build_feedback`` as is. Pure.

``client.dvm.nip90.build_result`` has no way to add tags, so this builds the same shape
(``request``, ``e``, ``p``, ``i`` or ``encrypted``, ``amount``) plus:

- ``["usage", "<prompt tokens>", "<completion tokens>", "<total tokens>"]``
- ``["model", "<model that answered>"]``
- ``["sealed", "nip44"]`` when the customer asked for a sealed result (``["param", "sealed",
  "nip44"]``) of a cleartext job: the content is NIP-44-encrypted to the customer, so other
  providers watching the relay cannot copy the answer.
- ``["salt", "<64 hex>"]`` when the result reveals a commitment (``["param", "commit",
  "sha256"]``): with it the customer recomputes ``client.dvm.sealing.commit`` over the plain text.
"""

from __future__ import annotations

from client.dvm.nip90 import RESULT_OFFSET, JobRequest
from client.dvm.sealing import TAG_SALT
from client.nostr import nip04, nip44
from client.nostr.event import Event, Tags
from client.nostr.keys import Keys
from router.types import LmUsage


def seal_nip44(text: str, keys: Keys, customer: str) -> str:
    return nip44.encrypt(text, nip44.conversation_key(keys.secret_hex, customer))


def build_result(
    keys: Keys,
    request: JobRequest,
    text: str,
    *,
    model: str,
    usage: LmUsage,
    amount_msats: int | None = None,
    bolt11: str | None = None,
    seal: str | None = None,
    salt: str | None = None,
    created_at: int | None = None,
) -> Event:
    tags: Tags = [
        ["request", request.event.to_json()],
        ["e", request.id],
        ["p", request.customer],
    ]
    content = text
    if request.encryption == "nip44":
        content = seal_nip44(text, keys, request.customer)
        tags.append(["encrypted"])
    elif request.encryption == "nip04":
        content = nip04.encrypt(text, keys.secret_hex, request.customer)
        tags.append(["encrypted"])
    else:
        tags.extend(["i", i.data] for i in request.inputs)
        if seal == "nip44":
            content = seal_nip44(text, keys, request.customer)
            tags.append(["sealed", "nip44"])
    if amount_msats is not None:
        tags.append(
            ["amount", str(amount_msats), bolt11] if bolt11 else ["amount", str(amount_msats)]
        )
    tags.append(
        [
            "usage",
            str(usage.prompt_tokens),
            str(usage.completion_tokens),
            str(usage.total_tokens or usage.prompt_tokens + usage.completion_tokens),
        ]
    )
    tags.append(["model", model])
    if salt is not None:
        tags.append([TAG_SALT, salt])
    return Event.create(keys, request.kind + RESULT_OFFSET, content, tags, created_at=created_at)
