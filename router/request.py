"""What a caller asks of a backend: :class:`LmRequest`, with its :class:`Sampling` options and,
for the swarm, its :class:`SwarmTerms`.

One typed value travels from the gateway (or a program) through the router to the backend that
answers. Each concept has one field: sampling options are :class:`Sampling`, quorum and money are
:class:`SwarmTerms`, and OpenAI body fields a backend should pass on unchanged are
``LmRequest.passthrough``. A misspelled option is a ``TypeError`` from Python itself (the
classes take keywords only); a wrong value is an :class:`~router.errors.InvalidRequest` naming
it. They are frozen slotted dataclasses: one request is built per completion, on the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, Protocol

from client.customer.copy_guard import SEALING_MODES, SealingMode
from client.customer.quorum import Comparator

from .errors import InvalidRequest
from .types import Prompt, validate_prompt

if TYPE_CHECKING:
    from client.customer.swarm import Progress
    from client.wallet.payments import PaymentGate

__all__ = [
    "NO_SAMPLING",
    "RESERVED_FIELDS",
    "SAMPLING_FIELDS",
    "SWARM_BODY_FIELDS",
    "SWARM_TERM_FIELDS",
    "LmRequest",
    "Sampling",
    "SwarmObserver",
    "SwarmTerms",
]

Encryption = Literal["nip44", "nip04"]


def _number(name: str, value: object) -> None:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise InvalidRequest(f"{name} must be a finite number, not {value!r}")


def _integer(name: str, value: object, minimum: int | None = None) -> None:
    if type(value) is not int or (minimum is not None and value < minimum):
        at_least = "" if minimum is None else f" >= {minimum}"
        raise InvalidRequest(f"{name} must be an integer{at_least}, not {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sampling:
    """How the model samples its answer. ``None`` leaves an option to the backend.

    OpenAI-compatible upstreams get each option under its own name; Ollama and the embedded
    model map them to theirs; the swarm sends ``temperature``, ``top_p``, ``top_k`` and ``seed``
    as the job's own parameters and the others as NIP-90 ``param`` tags.
    """

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    #: One stop sequence or several (a list given here is kept as a tuple).
    stop: str | tuple[str, ...] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if value is not None:
                _number(name, value)
        if self.repetition_penalty is not None:
            _number("repetition_penalty", self.repetition_penalty)
        if self.top_k is not None:
            _integer("top_k", self.top_k, 0)
        if self.seed is not None:
            _integer("seed", self.seed)
        stop = self.stop
        if stop is not None and type(stop) is not str:
            if not isinstance(stop, (list, tuple)) or not all(type(s) is str for s in stop):
                raise InvalidRequest(f"stop must be a string or a list of strings, not {stop!r}")
            object.__setattr__(self, "stop", tuple(stop))

    def items(self) -> list[tuple[str, Any]]:
        """The options that are set, as (name, value) for a request body (``stop`` as a list
        when several)."""
        out: list[tuple[str, Any]] = []
        for name in SAMPLING_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out.append((name, list(value) if type(value) is tuple else value))
        return out


#: No option set: every backend's defaults.
NO_SAMPLING = Sampling()
#: The names of :class:`Sampling`'s options.
SAMPLING_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Sampling))


class SwarmObserver(Protocol):
    """Watches one swarm job for a live view (the dashboard's ``ProgressTap`` is one): called
    with each step of the job (``client.customer.swarm.Progress``) as it happens, then
    :meth:`finish` once, with the job's ``SwarmResult``, the partial result of a quorum not
    reached, or None (the job failed otherwise, or was cancelled). It must be quick; an error
    in it is logged and costs the job nothing."""

    def __call__(self, progress: Progress, /) -> None: ...

    def finish(self, result: Any, /) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SwarmTerms:
    """What a swarm job may ask and pay. ``None`` leaves a term to the swarm backend's own
    setting; a backend that is not the swarm does not read them.

    ``quorum``: how many providers must agree. ``bid_msats``: the bid per provider;
    ``max_sats``: what the whole job may pay. The backend refuses a quorum or bid above its
    limits with ``InvalidRequest`` and never pays more than ``max_sats``. ``timeout_s``: the
    deadline for the quorum. ``comparator``: how answers are compared, by name (``auto``,
    ``semantic``, ``exact``, ...) or as a comparator object. ``targets``: provider keys (hex) to
    address; ``encrypt`` (``True``, ``"nip44"`` or ``"nip04"``) seals the request to each of
    them. ``sealing`` (``off``, ``prefer``, ``require``) and ``commit_reveal`` ask providers to
    protect their answers from copying (docs/security.md). ``job_params``: extra NIP-90
    ``param`` tags, one string or number each. ``hold``: a payment gate that must authorize
    every payment too (the gateway's reservation, ``client.wallet.payments.PaymentGate``).

    ``observer`` (a :class:`SwarmObserver`) is told the job's progress and outcome. It is not a
    term: it changes nothing about the job, is not in :data:`SWARM_TERM_FIELDS`, and a backend
    that cannot report progress leaves it uncalled.
    """

    quorum: int | None = None
    bid_msats: int | None = None
    max_sats: int | None = None
    timeout_s: float | None = None
    comparator: str | Comparator | None = None
    targets: tuple[str, ...] | None = None
    encrypt: bool | Encryption | None = None
    sealing: SealingMode | None = None
    commit_reveal: bool | None = None
    job_params: Mapping[str, str | int | float] | None = None
    hold: PaymentGate | None = None
    observer: SwarmObserver | None = None

    def __post_init__(self) -> None:
        if self.quorum is not None and (type(self.quorum) is not int or self.quorum < 1):
            raise InvalidRequest(f"quorum must be a positive integer, not {self.quorum!r}")
        if self.bid_msats is not None:
            _integer("bid_msats", self.bid_msats, 0)
        if self.max_sats is not None:
            _integer("max_sats", self.max_sats, 0)
        if self.timeout_s is not None:
            _number("timeout_s", self.timeout_s)
            if self.timeout_s <= 0:
                raise InvalidRequest(f"timeout_s must be positive, not {self.timeout_s!r}")
        cmp = self.comparator
        if cmp is not None and not (type(cmp) is str and cmp) and not isinstance(cmp, Comparator):
            raise InvalidRequest(f"comparator must be a comparator's name or object, not {cmp!r}")
        targets = self.targets
        if targets is not None:
            if (
                isinstance(targets, str)
                or not isinstance(targets, (list, tuple))
                or not all(type(t) is str and t for t in targets)
            ):
                raise InvalidRequest(f"targets must be a list of provider keys, not {targets!r}")
            object.__setattr__(self, "targets", tuple(targets))
        enc = self.encrypt
        if enc is not None and type(enc) is not bool and enc not in ("nip44", "nip04"):
            raise InvalidRequest(
                f"encrypt must be true, false, 'nip44' or 'nip04', not {self.encrypt!r}"
            )
        if self.sealing is not None and self.sealing not in SEALING_MODES:
            raise InvalidRequest(
                f"sealing must be one of {', '.join(SEALING_MODES)}, not {self.sealing!r}"
            )
        if self.commit_reveal is not None and type(self.commit_reveal) is not bool:
            raise InvalidRequest(f"commit_reveal must be true or false, not {self.commit_reveal!r}")
        params = self.job_params
        if params is not None:
            if not isinstance(params, Mapping):
                raise InvalidRequest(f"job_params must be a mapping, not {params!r}")
            for key, value in params.items():
                if type(key) is not str or not key:
                    raise InvalidRequest(f"job_params names must be non-empty strings: {key!r}")
                if type(value) not in (str, int, float):
                    raise InvalidRequest(
                        f"job_params[{key!r}] must be one string or number (a NIP-90 param), "
                        f"not {type(value).__name__}"
                    )
        hold = self.hold
        if hold is not None and not (
            callable(getattr(hold, "authorize", None)) and callable(getattr(hold, "outcome", None))
        ):
            raise InvalidRequest("hold must be a payment gate (authorize and outcome)")
        observer = self.observer
        if observer is not None and not (
            callable(observer) and callable(getattr(observer, "finish", None))
        ):
            raise InvalidRequest("observer must be callable and have a finish method")

    def given(self) -> tuple[str, ...]:
        """The names of the terms that are set."""
        return tuple(name for name in SWARM_TERM_FIELDS if getattr(self, name) is not None)


#: The names of :class:`SwarmTerms`' terms (its ``observer`` watches the job: not a term).
SWARM_TERM_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(SwarmTerms) if f.name != "observer"
)

#: The swarm's terms as request-body fields (the gateway's spelling): read by the gateway,
#: never passed on to an upstream.
SWARM_BODY_FIELDS: tuple[str, ...] = ("quorum", "bid_sats", "comparator")
#: Body fields an upstream's request gets from the request itself (model, prompt, limit,
#: streaming) or from a typed field (sampling options, swarm terms): ``passthrough`` must not
#: hold them, or the same option would reach the upstream twice, or be ignored.
RESERVED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "input",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        *SAMPLING_FIELDS,
        *SWARM_BODY_FIELDS,
    }
)

LimitName = Literal["max_tokens", "max_completion_tokens"]


@dataclass(frozen=True, slots=True)
class LmRequest:
    """One completion to make: ``model``, ``prompt`` (a string, a
    :class:`~router.types.TextPrompt`, an :class:`~router.types.EmbeddingInput` or chat
    messages) and ``max_tokens``, with keyword-only options:

    - ``sampling``: :class:`Sampling` (temperature, top_p, seed, stop, ...);
    - ``swarm``: :class:`SwarmTerms` for the swarm (quorum, bid, budget, comparator, ...);
    - ``passthrough``: OpenAI body fields an OpenAI-compatible upstream gets unchanged
      (``tools``, ``response_format``, ``logprobs``, fields of local servers, ...) unless its
      backend drops them (``drop_params``); Ollama maps those it knows and refuses the rest, the
      swarm refuses them all (``user`` aside, which no backend sends on). A name in
      :data:`RESERVED_FIELDS` (``temperature``, ``quorum``, ``max_tokens``, ...) is refused.
    - ``max_tokens_field``: the name the caller gave the limit; ``max_completion_tokens`` is
      sent to chat endpoints under that name (OpenAI's reasoning models refuse ``max_tokens``).
    """

    model: str
    prompt: Prompt
    max_tokens: int = 256
    sampling: Sampling = field(default=NO_SAMPLING, kw_only=True)
    swarm: SwarmTerms | None = field(default=None, kw_only=True)
    passthrough: Mapping[str, Any] = field(default_factory=dict, kw_only=True)
    max_tokens_field: LimitName = field(default="max_tokens", kw_only=True)

    def __post_init__(self) -> None:
        if type(self.model) is not str or not self.model:
            raise InvalidRequest("model must be a non-empty string")
        if type(self.prompt) is not str:
            try:
                validate_prompt(self.prompt)
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(str(exc)) from None
        if type(self.max_tokens) is not int or self.max_tokens < 1:
            raise InvalidRequest("max_tokens must be a positive integer")
        if type(self.sampling) is not Sampling:
            raise TypeError(f"sampling must be a Sampling, not {type(self.sampling).__name__}")
        if self.swarm is not None and type(self.swarm) is not SwarmTerms:
            raise TypeError(f"swarm must be SwarmTerms, not {type(self.swarm).__name__}")
        extra = self.passthrough
        if extra:
            if not isinstance(extra, Mapping):
                raise TypeError(f"passthrough must be a mapping, not {type(extra).__name__}")
            if not RESERVED_FIELDS.isdisjoint(extra):
                name = sorted(RESERVED_FIELDS.intersection(extra))[0]
                raise InvalidRequest(
                    f"passthrough must not hold {name!r}: it has a field of its own "
                    "(LmRequest, Sampling or SwarmTerms)"
                )
        if self.max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise InvalidRequest(
                "max_tokens_field must be 'max_tokens' or 'max_completion_tokens', "
                f"not {self.max_tokens_field!r}"
            )

    def upstream_params(self) -> dict[str, Any]:
        """What an upstream's body gets besides the model, prompt and limit: the sampling
        options that are set, then the passthrough fields."""
        out = dict(self.sampling.items()) if self.sampling is not NO_SAMPLING else {}
        if self.passthrough:
            out.update(self.passthrough)
        return out
