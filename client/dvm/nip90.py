"""NIP-90 text generation jobs (kinds 5050 / 6050 / 7000, deletion kind 5): pure builders and
parsers for both sides. No I/O; the clock is a parameter. The wire profile this implements is
``docs/wire-profile.md`` ("nostr-swarm/1").

Customer side::

    spec = JobSpec(prompt="2+2?", model="llama3", max_tokens=64, bid_msats=10_000,
                   relays=("wss://r",), targets=(pk1, pk2))
    job = build_job(keys, spec)                       # one request, or one per target if encrypted
    result = parse_result(event, job, keys)           # strict: raises JobRejected(reason=...)
    feedback = parse_feedback(event, job, keys)
    cancel = build_deletion(keys, job.ids)

Provider side::

    req = parse_request(event, keys=provider_keys, now=int(time.time()))   # lenient names
    build_feedback(provider_keys, req, "processing")
    build_result(provider_keys, req, "4", amount_msats=5000, bolt11=invoice_for_5000_msats,
                 usage=usage, model="llama3")        # amount rules: client.dvm.amounts

Where the ecosystem disagrees we are lenient on what we accept (input type ``prompt``,
``top-k``/``top_k`` and other old parameter spellings, ``payment_required``/``payment-required``,
unknown feedback statuses kept as informational); where money or trust is at stake we are strict
(signature, ``e`` tag, ``p`` tag, ``request`` tag, provider of an encrypted job, size caps,
``amount`` syntax). Every refusal is a :class:`~client.nostr.errors.JobRejected` with a short
``reason``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from client.dvm.amounts import Amount, amount_tags, check_amount, parse_amount
from client.nostr import nip04, nip44
from client.nostr.errors import (
    DecryptionError,
    EncryptionError,
    InvalidEvent,
    InvalidKey,
    JobRejected,
)
from client.nostr.event import Event, Tags, check_tags, is_hex
from client.nostr.keys import Keys

KIND_TEXT_GENERATION = 5050
KIND_TEXT_RESULT = 6050
KIND_FEEDBACK = 7000
KIND_DELETION = 5
REQUEST_KINDS = range(5000, 6000)
RESULT_OFFSET = 1000

WIRE_PROFILE = "nostr-swarm/1"
# Sealed results (wire profile §8): ["param", "sealed", "nip44"] asks, ["sealed", "nip44"] marks.
TAG_SEALED = "sealed"
SEAL_NIP44: Final = "nip44"
# Commit-reveal (wire profile §8.2): a revealed result's salt.
TAG_SALT = "salt"

# Caps: a provider's answer and a customer's prompt are text, not archives.
MAX_PROMPT_CHARS = 200_000
MAX_RESULT_BYTES = 256 * 1024
MAX_FEEDBACK_BYTES = 16 * 1024
MAX_TAGS = 200
# Clock skew we tolerate between a job and the answers that reference it.
DEFAULT_SKEW_S = 600

Encryption = Literal["nip44", "nip04"]

# Feedback statuses (the spelling we send; `payment_required` and friends are read as these).
PAYMENT_REQUIRED = "payment-required"
PAYMENT_REJECTED = "payment-rejected"
PROCESSING = "processing"
ERROR = "error"
SUCCESS = "success"
PARTIAL = "partial"
KNOWN_STATUSES = frozenset(
    (PAYMENT_REQUIRED, PAYMENT_REJECTED, PROCESSING, ERROR, SUCCESS, PARTIAL)
)

# Parameter spellings seen in the wild -> the one we use.
PARAM_ALIASES: dict[str, str] = {
    "top-k": "top_k",
    "topk": "top_k",
    "top-p": "top_p",
    "topp": "top_p",
    "max-tokens": "max_tokens",
    "maxtokens": "max_tokens",
    "max_new_tokens": "max_tokens",
    "max_length": "max_tokens",
    "max-length": "max_tokens",
    "frequency-penalty": "frequency_penalty",
    "frequencypenalty": "frequency_penalty",
    "presence-penalty": "presence_penalty",
    "presencepenalty": "presence_penalty",
    "temp": "temperature",
    "llm": "model",
}
TEXT_INPUT_TYPES = frozenset(("text", "prompt"))


def canonical_param(name: str) -> str:
    key = name.strip().lower()
    return PARAM_ALIASES.get(key, key)


def normalize_status(status: str) -> str:
    """``Payment_Required`` -> ``payment-required``; unknown statuses keep their (lowered) text."""
    return status.strip().lower().replace("_", "-")


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobInput:
    data: str
    type: str
    relay: str = ""
    marker: str = ""


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What the customer asks for. ``params`` holds extra ``param`` tags (string values)."""

    prompt: str
    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    params: Mapping[str, str | int | float] = field(default_factory=dict)
    bid_msats: int | None = None
    relays: tuple[str, ...] = ()
    output: str | None = "text/plain"
    targets: tuple[str, ...] = ()
    expiration: int | None = None
    encryption: Encryption | None = None
    kind: int = KIND_TEXT_GENERATION
    extra_tags: tuple[tuple[str, ...], ...] = ()
    # Makes two identical jobs in the same second distinct events (else the second one would be
    # the first one again, with its results). None: a random one per request; "": no tag.
    nonce: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt:
            raise JobRejected("prompt must be a non-empty string", "malformed")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise JobRejected(f"prompt longer than {MAX_PROMPT_CHARS} characters", "oversized")
        if self.kind not in REQUEST_KINDS:
            raise JobRejected("job kind must be 5000..5999", "wrong_kind")
        if self.bid_msats is not None and (type(self.bid_msats) is not int or self.bid_msats < 0):
            raise JobRejected("bid must be a non-negative integer of millisats", "malformed")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise JobRejected("max_tokens must be >= 1", "malformed")
        for t in self.targets:
            if not is_hex(t, 64):
                raise JobRejected("targets must be 64-hex public keys", "malformed")
        if self.encryption is not None:
            if self.encryption not in ("nip44", "nip04"):
                raise JobRejected("encryption must be 'nip44' or 'nip04'", "malformed")
            if not self.targets:
                raise JobRejected("an encrypted job needs target providers (p tags)", "malformed")

    def param_tags(self) -> Tags:
        tags: Tags = []
        named: list[tuple[str, object]] = [
            ("model", self.model),
            ("max_tokens", self.max_tokens),
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("top_k", self.top_k),
            ("seed", self.seed),
        ]
        for name, value in named:
            if value is not None:
                tags.append(["param", name, _fmt(value)])
        for name, value in self.params.items():
            tags.append(["param", canonical_param(name), _fmt(value)])
        return tags


@dataclass(frozen=True, slots=True)
class Job:
    """The request event(s) a customer published for one job. An encrypted job has one request per
    target provider; ``targets`` maps request id -> the provider it was sealed for."""

    requests: tuple[Event, ...]
    encryption: Encryption | None = None
    targets: Mapping[str, str] = field(default_factory=dict)
    # Our own JSON text of each request: a provider echoing it verbatim is checked by comparison.
    texts: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The first request's id (the job's name in logs and the only id when not encrypted)."""
        return self.requests[0].id

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.requests)

    @property
    def kind(self) -> int:
        return self.requests[0].kind

    @property
    def customer(self) -> str:
        return self.requests[0].pubkey

    @property
    def created_at(self) -> int:
        return min(r.created_at for r in self.requests)

    def request(self, request_id: str) -> Event | None:
        for r in self.requests:
            if r.id == request_id:
                return r
        return None


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A parsed (and, if it was encrypted, decrypted) job request, as a provider sees it."""

    event: Event
    inputs: tuple[JobInput, ...]
    params: Mapping[str, str]
    bid_msats: int | None
    relays: tuple[str, ...]
    output: str | None
    targets: tuple[str, ...]
    expiration: int | None
    encryption: Encryption | None

    @property
    def id(self) -> str:
        return self.event.id

    @property
    def customer(self) -> str:
        return self.event.pubkey

    @property
    def kind(self) -> int:
        return self.event.kind

    @property
    def prompt(self) -> str:
        return "\n\n".join(i.data for i in self.inputs if i.type in TEXT_INPUT_TYPES)

    @property
    def model(self) -> str | None:
        return self.params.get("model")

    @property
    def max_tokens(self) -> int | None:
        return _int_param(self.params, "max_tokens", 1)

    @property
    def temperature(self) -> float | None:
        return _float_param(self.params, "temperature", 0.0, 10.0)

    @property
    def top_p(self) -> float | None:
        return _float_param(self.params, "top_p", 0.0, 1.0)

    @property
    def top_k(self) -> int | None:
        return _int_param(self.params, "top_k", 0)

    @property
    def seed(self) -> int | None:
        return _int_param(self.params, "seed", None)

    def is_for(self, pubkey: str) -> bool:
        """No ``p`` targets (open to all) or ``pubkey`` is one of them."""
        return not self.targets or pubkey in self.targets


@dataclass(frozen=True, slots=True)
class JobResult:
    event: Event
    provider: str
    job_id: str
    content: str
    amount: Amount | None
    encrypted: bool
    # A cleartext job's result sealed to the customer (``["sealed", "nip44"]``), decrypted here.
    sealed: bool = False

    @property
    def created_at(self) -> int:
        return self.event.created_at


@dataclass(frozen=True, slots=True)
class JobFeedback:
    event: Event
    provider: str
    job_id: str
    status: str
    extra: str
    amount: Amount | None
    content: str
    encrypted: bool

    @property
    def known(self) -> bool:
        """False for statuses outside NIP-90 and common practice: informational only."""
        return self.status in KNOWN_STATUSES


# --- small parsing helpers -------------------------------------------------------------------


def _int_param(params: Mapping[str, str], name: str, minimum: int | None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    bad = JobRejected(f"param {name} is not an integer: {raw[:32]!r}", "malformed")
    try:
        value = int(raw.strip())
    except ValueError:
        try:  # "512.0" is seen in the wild
            f = float(raw)
        except ValueError:
            raise bad from None
        if not f.is_integer():
            raise bad from None
        value = int(f)
    if minimum is not None and value < minimum:
        raise JobRejected(f"param {name} must be >= {minimum}", "malformed")
    return value


def _float_param(params: Mapping[str, str], name: str, lo: float, hi: float) -> float | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise JobRejected(f"param {name} is not a number: {raw[:32]!r}", "malformed") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise JobRejected(f"param {name} must be between {lo} and {hi}", "malformed")
    return value


def _amount_of(event: Event) -> Amount | None:
    return _amount_in(event.tags)


def _amount_in(all_tags: Tags) -> Amount | None:
    tags = [t for t in all_tags if t[0] == "amount"]
    if not tags:
        return None
    if len(tags) > 1:
        raise JobRejected("more than one amount tag", "malformed")
    return parse_amount(tags[0])


def _decrypt(content: str, keys: Keys, peer: str) -> tuple[str, Encryption]:
    """Tell NIP-04 from NIP-44 by the payload's shape (``?iv=`` means NIP-04) and decrypt."""
    try:
        if "?iv=" in content:
            return nip04.decrypt(content, keys.secret_hex, peer), "nip04"
        return nip44.decrypt(content, nip44.conversation_key(keys.secret_hex, peer)), "nip44"
    except (DecryptionError, InvalidKey) as exc:
        raise JobRejected(f"cannot decrypt: {exc}", "decrypt") from None


def _encrypt(text: str, keys: Keys, peer: str, scheme: Encryption) -> str:
    try:
        if scheme == "nip04":
            return nip04.encrypt(text, keys.secret_hex, peer)
        return nip44.encrypt(text, nip44.conversation_key(keys.secret_hex, peer))
    except (EncryptionError, InvalidKey) as exc:
        raise JobRejected(f"cannot encrypt: {exc}", "malformed") from None


# --- customer: requests ----------------------------------------------------------------------


def _visible_tags(spec: JobSpec) -> Tags:
    tags: Tags = []
    nonce = os.urandom(8).hex() if spec.nonce is None else spec.nonce
    if nonce:
        tags.append(["nonce", nonce])
    if spec.output:
        tags.append(["output", spec.output])
    if spec.bid_msats is not None:
        tags.append(["bid", str(spec.bid_msats)])
    if spec.relays:
        tags.append(["relays", *spec.relays])
    if spec.expiration is not None:
        tags.append(["expiration", str(spec.expiration)])
    tags.extend(list(t) for t in spec.extra_tags)
    return tags


def build_request(keys: Keys, spec: JobSpec, *, created_at: int | None = None) -> Event:
    """One cleartext request: ``i`` (text), ``param``s, ``output``, ``bid``, ``relays``,
    ``expiration`` and a ``p`` per target."""
    tags: Tags = [["i", spec.prompt, "text"], *spec.param_tags(), *_visible_tags(spec)]
    tags.extend(["p", t] for t in spec.targets)
    return Event.create(keys, spec.kind, "", tags, created_at=created_at)


def build_encrypted_request(
    keys: Keys,
    spec: JobSpec,
    target: str,
    *,
    scheme: Encryption = "nip44",
    created_at: int | None = None,
) -> Event:
    """A request sealed for one provider: ``i`` and ``param`` tags go into the encrypted content
    (a JSON array of tags); visible: ``p``, ``encrypted``, ``output``, ``bid``, ``relays``,
    ``expiration``."""
    secret = [["i", spec.prompt, "text"], *spec.param_tags()]
    content = _encrypt(json.dumps(secret, ensure_ascii=False), keys, target, scheme)
    tags: Tags = [["p", target], ["encrypted"], *_visible_tags(spec)]
    return Event.create(keys, spec.kind, content, tags, created_at=created_at)


def build_job(keys: Keys, spec: JobSpec, *, created_at: int | None = None) -> Job:
    """The request(s) for ``spec``: one event, or one encrypted event per target."""
    if spec.encryption is None:
        request = build_request(keys, spec, created_at=created_at)
        return Job((request,), texts={request.id: request.to_json()})
    requests = tuple(
        build_encrypted_request(keys, spec, t, scheme=spec.encryption, created_at=created_at)
        for t in dict.fromkeys(spec.targets)
    )
    return Job(
        requests,
        spec.encryption,
        {r.id: r.tags_named("p")[0][1] for r in requests},
        {r.id: r.to_json() for r in requests},
    )


def build_deletion(
    keys: Keys,
    event_ids: Iterable[str],
    *,
    kind: int = KIND_TEXT_GENERATION,
    reason: str = "",
    created_at: int | None = None,
) -> Event:
    """NIP-09 deletion of our own request(s): ``e`` per id and ``["k", "<kind>"]``."""
    tags: Tags = [["e", i] for i in event_ids]
    if not tags:
        raise JobRejected("nothing to delete", "malformed")
    tags.append(["k", str(kind)])
    return Event.create(keys, KIND_DELETION, reason, tags, created_at=created_at)


# --- customer: results and feedback (strict) -------------------------------------------------


def _check_reply(
    event: Event,
    job: Job,
    keys: Keys,
    *,
    kinds: Iterable[int],
    max_bytes: int,
    skew: int,
    verify: bool,
    p_optional: bool = False,
) -> tuple[Event, str]:
    """Checks shared by results and feedback; returns (our request, provider key).
    ``p_optional``: a missing ``p`` tag is accepted (feedback: some DVMs send none)."""
    if verify and not event.verify():
        raise JobRejected("signature or id does not verify", "forged")
    if event.kind not in kinds:
        raise JobRejected(f"kind {event.kind} is not a reply to this job", "wrong_kind")
    if len(event.tags) > MAX_TAGS:
        raise JobRejected("too many tags", "oversized")
    if len(event.content) > max_bytes or len(event.content.encode("utf-8")) > max_bytes:
        raise JobRejected(f"content larger than {max_bytes} bytes", "oversized")
    e = event.tag_value("e")
    request = job.request(e) if e is not None else None
    if request is None:
        raise JobRejected("e tag does not name this job", "other_job")
    p = event.tag_value("p")
    if p != keys.public_key and not (p is None and p_optional):
        raise JobRejected("p tag does not name this customer", "other_customer")
    target = job.targets.get(request.id)
    if target is not None and event.pubkey != target:
        raise JobRejected("reply to a request sealed for another provider", "wrong_provider")
    if event.created_at < request.created_at - skew:
        raise JobRejected("reply older than the job", "stale")
    return request, event.pubkey


def _check_request_tag(event: Event, request: Event, our_text: str | None) -> None:
    tags = event.tags_named("request")
    if not tags:
        return
    if len(tags) > 1 or len(tags[0]) < 2:
        raise JobRejected("malformed request tag", "bad_request_tag")
    if our_text is not None and tags[0][1] == our_text:
        return  # our own request, byte for byte
    try:
        obj = json.loads(tags[0][1])
        embedded = Event.from_dict(obj, verify=False)
    except (ValueError, RecursionError, InvalidEvent):  # RecursionError: absurd nesting
        raise JobRejected("request tag is not an event", "bad_request_tag") from None
    # The embedded fields must hash to our id, not merely claim it.
    if embedded.id != request.id or not embedded.id_matches():
        raise JobRejected("request tag is not our request", "bad_request_tag")


def parse_result(
    event: Event,
    job: Job,
    keys: Keys,
    *,
    max_bytes: int = MAX_RESULT_BYTES,
    skew: int = DEFAULT_SKEW_S,
    verify: bool = True,
) -> JobResult:
    """A provider's result for ``job``, checked strictly; decrypted when the job is encrypted.
    ``verify=False`` skips the signature check when the caller has already verified it."""
    request, provider = _check_reply(
        event,
        job,
        keys,
        kinds=(job.kind + RESULT_OFFSET,),
        max_bytes=max_bytes,
        skew=skew,
        verify=verify,
    )
    _check_request_tag(event, request, job.texts.get(request.id))
    amount = _amount_of(event)
    content = event.content
    encrypted = job.encryption is not None
    sealed = False
    if encrypted:
        if not any(t[0] == "encrypted" for t in event.tags):
            raise JobRejected("result to an encrypted job is not encrypted", "malformed")
        content, _ = _decrypt(content, keys, provider)
    elif (scheme := _sealed_scheme(event)) is not None:
        content, sealed = _unseal(content, scheme, keys, provider), True
    if (encrypted or sealed) and len(content.encode("utf-8")) > max_bytes:
        raise JobRejected(f"content larger than {max_bytes} bytes", "oversized")
    return JobResult(event, provider, request.id, content, amount, encrypted, sealed)


def _sealed_scheme(event: Event) -> str | None:
    """The scheme of a ``["sealed", <scheme>]`` tag (copy resistance, wire profile §8)."""
    tags = event.tags_named(TAG_SEALED)
    if not tags:
        return None
    if len(tags) > 1:
        raise JobRejected("more than one sealed tag", "malformed")
    return (tags[0][1] if len(tags[0]) > 1 else "").strip().lower()


def _unseal(content: str, scheme: str, keys: Keys, provider: str) -> str:
    """A sealed result is NIP-44 from the provider's key to ours. Copied ciphertext (another
    provider's sealed result re-signed) fails here: it was sealed under another key pair."""
    if scheme != SEAL_NIP44:
        raise JobRejected(f"unknown seal scheme {scheme[:16]!r}", "malformed")
    try:
        return nip44.decrypt(content, nip44.conversation_key(keys.secret_hex, provider))
    except (DecryptionError, InvalidKey) as exc:
        raise JobRejected(f"cannot open sealed result: {exc}", "decrypt") from None


def parse_feedback(
    event: Event,
    job: Job,
    keys: Keys,
    *,
    max_bytes: int = MAX_FEEDBACK_BYTES,
    skew: int = DEFAULT_SKEW_S,
    verify: bool = True,
) -> JobFeedback:
    """A kind-7000 feedback for ``job``. Status spellings are normalized; unknown statuses are
    kept (``known`` is False) as information. A missing ``p`` tag is accepted (the ``e`` tag
    names our request); a ``p`` naming someone else is not.

    Feedback to an encrypted job may carry its tags as an encrypted JSON tag list in
    ``content`` (nostrdvm, NDK, and our own providers): the sealed ``status``/``amount`` tags
    then stand in for visible ones of the same name, and a sealed ``["content", <text>]`` tag is
    the partial result. A visible and a sealed ``amount`` that differ are refused (money)."""
    request, provider = _check_reply(
        event,
        job,
        keys,
        kinds=(KIND_FEEDBACK,),
        max_bytes=max_bytes,
        skew=skew,
        verify=verify,
        p_optional=True,
    )
    tags = event.tags
    content = event.content
    encrypted = job.encryption is not None and bool(content)
    if encrypted:
        content, _ = _decrypt(content, keys, provider)
        if len(content.encode("utf-8")) > max_bytes:
            raise JobRejected(f"content larger than {max_bytes} bytes", "oversized")
        hidden = _tag_list(content)
        if hidden is not None:
            tags = _merge_sealed_feedback(event, hidden)
            content = next((t[1] for t in hidden if t[0] == "content" and len(t) > 1), "")
    statuses = [t for t in tags if t[0] == "status"]
    if len(statuses) != 1 or len(statuses[0]) < 2 or not statuses[0][1].strip():
        raise JobRejected("feedback needs exactly one status tag", "malformed")
    status = normalize_status(statuses[0][1])[:64]
    extra = statuses[0][2][:1024] if len(statuses[0]) > 2 else ""
    amount = _amount_in(tags)
    return JobFeedback(event, provider, request.id, status, extra, amount, content, encrypted)


def _tag_list(text: str) -> Tags | None:
    """``text`` as a JSON array of string arrays (an encrypted tag list), or None."""
    if not text.lstrip().startswith("["):
        return None
    try:
        return check_tags(json.loads(text))
    except (ValueError, RecursionError, InvalidEvent):
        return None


def _merge_sealed_feedback(event: Event, hidden: Tags) -> Tags:
    """Sealed status/amount tags stand in for visible ones; routing tags (e, p) stay visible."""
    if len(hidden) > MAX_TAGS:
        raise JobRejected("too many sealed tags", "oversized")
    sealed = [t for t in hidden if t[0] in ("status", "amount")]
    names = {t[0] for t in sealed}
    visible_amount = _amount_in(event.tags)
    merged = [t for t in event.tags if t[0] not in names] + sealed
    sealed_amount = _amount_in(sealed)
    if visible_amount is not None and sealed_amount is not None and visible_amount != sealed_amount:
        raise JobRejected("visible and sealed amount tags differ", "malformed")
    return merged


# --- provider: requests (lenient names, strict structure) ------------------------------------


def _parse_inputs(tags: Tags) -> tuple[JobInput, ...]:
    inputs: list[JobInput] = []
    for tag in tags:
        if tag[0] != "i":
            continue
        if len(tag) < 2 or not tag[1]:
            raise JobRejected("i tag without data", "malformed")
        kind = tag[2].strip().lower() if len(tag) > 2 and tag[2].strip() else "text"
        relay = tag[3] if len(tag) > 3 else ""
        marker = tag[4] if len(tag) > 4 else ""
        inputs.append(JobInput(tag[1], kind, relay, marker))
    return tuple(inputs)


def _parse_params(tags: Tags) -> dict[str, str]:
    params: dict[str, str] = {}
    for tag in tags:
        if tag[0] != "param":
            continue
        if len(tag) < 3 or not tag[1].strip():
            raise JobRejected("param tag needs a name and a value", "malformed")
        name = canonical_param(tag[1])
        if name in params:
            raise JobRejected(f"param {name} given twice", "malformed")
        params[name] = tag[2]
    return params


def _single_int(all_tags: Tags, name: str, where: str = "") -> int | None:
    tags = [t for t in all_tags if t[0] == name]
    if not tags:
        return None
    if len(tags) > 1 or len(tags[0]) < 2:
        raise JobRejected(f"malformed {where}{name} tag", "malformed")
    raw = tags[0][1].strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise JobRejected(f"{name} must be a whole non-negative number", "malformed")
    return int(raw)


def _lowest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def parse_request(
    event: Event,
    *,
    keys: Keys | None = None,
    now: int | None = None,
    kinds: Iterable[int] = (KIND_TEXT_GENERATION,),
    verify: bool = True,
    max_prompt_chars: int = MAX_PROMPT_CHARS,
) -> JobRequest:
    """Parse a job request for a provider. ``keys`` (the provider's) are needed for encrypted
    requests; ``now`` (unix s) enables the ``expiration`` check. Raises :class:`JobRejected`."""
    if verify and not event.verify():
        raise JobRejected("signature or id does not verify", "forged")
    if event.kind not in set(kinds):
        raise JobRejected(f"kind {event.kind} is not a supported job kind", "wrong_kind")
    if len(event.tags) > MAX_TAGS:
        raise JobRejected("too many tags", "oversized")
    targets = tuple(t[1] for t in event.tags if t[0] == "p" and len(t) > 1)
    expiration = _single_int(event.tags, "expiration")
    if now is not None and expiration is not None and expiration <= now:
        raise JobRejected("job expired", "expired")
    bid = _single_int(event.tags, "bid")
    tags = event.tags
    encryption: Encryption | None = None
    if any(t[0] == "encrypted" for t in tags):
        if keys is None or keys.public_key not in targets:
            raise JobRejected("encrypted job for another provider", "not_for_us")
        if len(event.content) > 4 * max_prompt_chars + 4096:
            raise JobRejected("encrypted content too large", "oversized")
        plain, encryption = _decrypt(event.content, keys, event.pubkey)
        try:
            hidden = check_tags(json.loads(plain))
        except (ValueError, RecursionError, InvalidEvent):
            raise JobRejected("decrypted content is not a JSON list of tags", "malformed") from None
        # The sealed i/param tags replace any cleartext ones.
        tags = [t for t in tags if t[0] not in ("i", "param", "bid", "expiration")] + [
            t for t in hidden if t[0] not in ("bid", "expiration")
        ]
        # NDK and nostrdvm seal bid (and relays, output) too. Given both ways, the lower bid and
        # the earlier expiration win: the customer never pays more or waits longer than it said.
        bid = _lowest(bid, _single_int(hidden, "bid", "sealed "))
        expiration = _lowest(expiration, _single_int(hidden, "expiration", "sealed "))
        if now is not None and expiration is not None and expiration <= now:
            raise JobRejected("job expired", "expired")
    inputs = _parse_inputs(tags)
    if not inputs:
        raise JobRejected("job has no input", "malformed")
    if not any(i.type in TEXT_INPUT_TYPES for i in inputs):
        kinds_seen = ", ".join(sorted({i.type for i in inputs}))
        raise JobRejected(f"unsupported input type ({kinds_seen})", "unsupported_input")
    params = _parse_params(tags)
    outputs = [t for t in tags if t[0] == "output"]
    output = outputs[0][1] if outputs and len(outputs[0]) > 1 else None
    relays_tags = [t for t in tags if t[0] == "relays"]
    relays = tuple(u for t in relays_tags for u in t[1:] if u)
    req = JobRequest(
        event=event,
        inputs=inputs,
        params=params,
        bid_msats=bid,
        relays=relays,
        output=output,
        targets=targets,
        expiration=expiration,
        encryption=encryption,
    )
    if len(req.prompt) > max_prompt_chars:
        raise JobRejected(f"prompt longer than {max_prompt_chars} characters", "oversized")
    # Typed params are checked now so a bad value fails here, not halfway through a job.
    _ = (req.max_tokens, req.temperature, req.top_p, req.top_k, req.seed)
    return req


# --- provider: results and feedback ----------------------------------------------------------


def _reply_tags(request: JobRequest, relay_hint: str) -> Tags:
    e = ["e", request.id, relay_hint] if relay_hint else ["e", request.id]
    return [e, ["p", request.customer]]


class Usage(Protocol):
    """Token counts of one completion (``router.types.LmUsage`` is one)."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def total_tokens(self) -> int: ...


def _usage_tag(usage: Usage) -> Tags:
    counts = (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
    if not all(type(n) is int and n >= 0 for n in counts):
        raise JobRejected("usage must be non-negative integer token counts", "malformed")
    total = usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
    return [["usage", str(usage.prompt_tokens), str(usage.completion_tokens), str(total)]]


def build_result(
    keys: Keys,
    request: JobRequest,
    content: str,
    *,
    amount_msats: int | None = None,
    bolt11: str | None = None,
    usage: Usage | None = None,
    model: str | None = None,
    seal: str | None = None,
    salt: str | None = None,
    relay_hint: str = "",
    created_at: int | None = None,
) -> Event:
    """Kind request+1000 result. Tags, in this order: ``request`` (the request's JSON), ``e``,
    ``p``; ``encrypted`` (the content encrypted back with the request's scheme) or the ``i``
    inputs, then ``["sealed", "nip44"]`` when ``seal`` asks for a cleartext job's answer to be
    encrypted to the customer (an encrypted job's answer is encrypted anyway); ``amount``
    (:func:`client.dvm.amounts.check_amount`: at most the bid, the invoice's amount equal to
    it); ``["usage", <prompt>, <completion>, <total>]``; ``["model", <name>]``; ``["salt",
    <64 hex>]`` when the result reveals a commitment (wire profile §3, §8)."""
    amount = check_amount(amount_msats, bolt11, bid_msats=request.bid_msats)
    if seal is not None and seal != SEAL_NIP44:
        raise JobRejected(f"unknown seal scheme {seal[:16]!r}", "malformed")
    if salt is not None and not is_hex(salt, 64):
        raise JobRejected("salt must be 64 hex characters", "malformed")
    tags: Tags = [["request", request.event.to_json()], *_reply_tags(request, relay_hint)]
    if request.encryption is not None:
        content = _encrypt(content, keys, request.customer, request.encryption)
        tags.append(["encrypted"])
    else:
        tags.extend(["i", i.data] for i in request.inputs)
        if seal is not None:
            content = _encrypt(content, keys, request.customer, SEAL_NIP44)
            tags.append([TAG_SEALED, SEAL_NIP44])
    tags.extend(amount_tags(amount))
    if usage is not None:
        tags.extend(_usage_tag(usage))
    if model is not None:
        tags.append(["model", model])
    if salt is not None:
        tags.append([TAG_SALT, salt])
    return Event.create(keys, request.kind + RESULT_OFFSET, content, tags, created_at=created_at)


def build_feedback(
    keys: Keys,
    request: JobRequest,
    status: str,
    *,
    extra: str = "",
    amount_msats: int | None = None,
    bolt11: str | None = None,
    content: str = "",
    relay_hint: str = "",
    created_at: int | None = None,
) -> Event:
    """Kind-7000 feedback: ``status`` (normalized spelling), ``amount`` (checked as a result's,
    except that an ``error`` may quote a price above the bid), ``e``, ``p``.

    To an encrypted request, ``content`` is the encrypted JSON tag list ``["content", <partial
    result or "">]``, ``status``, ``amount``: the form NDK and nostrdvm read (NDK throws on an
    empty content). The ``content`` tag is always there and first: nostrdvm's Bot shows the
    user the last of it and the status text, and else the raw ciphertext. The visible tags
    stay as well, for clients that read those."""
    status_tag = ["status", normalize_status(status)]
    if extra:
        status_tag.append(extra)
    # An error may quote a price above the bid (the bid was too low); any other status asks
    # for at most the bid.
    bid = None if status_tag[1] == ERROR else request.bid_msats
    amount = amount_tags(check_amount(amount_msats, bolt11, bid_msats=bid))
    tags: Tags = [status_tag, *amount, *_reply_tags(request, relay_hint)]
    if request.encryption is not None:
        sealed = [["content", content], status_tag, *amount]
        tags.append(["encrypted"])
        content = _encrypt(
            json.dumps(sealed, ensure_ascii=False), keys, request.customer, request.encryption
        )
    return Event.create(keys, KIND_FEEDBACK, content, tags, created_at=created_at)
