"""The typed request (router/request.py): what LmRequest, Sampling and SwarmTerms accept, and that
a misspelled or misplaced option is an error where it is written, never a silent drop."""

from __future__ import annotations

from typing import Any

import pytest

from client.customer.quorum import exact
from router.errors import InvalidRequest
from router.request import NO_SAMPLING, LmRequest, Sampling, SwarmTerms
from router.types import TextPrompt


class Gate:
    def authorize(self, payment_hash: str, msats: int) -> bool:
        return True

    def outcome(self, payment_hash: str, status: str) -> None:
        return None


def test_misspelled_fields_are_type_errors_from_python() -> None:
    with pytest.raises(TypeError, match="quorom"):
        SwarmTerms(quorom=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="top_kk"):
        Sampling(top_kk=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="temperature"):
        LmRequest("m", "x", 5, temperature=0.2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):  # options are keyword-only
        SwarmTerms(2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="sampling must be a Sampling"):
        LmRequest("m", "x", sampling={"temperature": 0.2})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="swarm must be SwarmTerms"):
        LmRequest("m", "x", swarm={"quorum": 2})  # type: ignore[arg-type]


def test_sampling_checks_each_option_and_lists_what_is_set() -> None:
    s = Sampling(temperature=0, top_k=40, seed=-1, stop=["a", "b"], repetition_penalty=1.1)
    assert s.stop == ("a", "b")  # frozen: a list given becomes a tuple
    assert s.items() == [
        ("temperature", 0),
        ("top_k", 40),
        ("seed", -1),
        ("stop", ["a", "b"]),  # sent as a list
        ("repetition_penalty", 1.1),
    ]
    assert NO_SAMPLING.items() == [] and Sampling(stop="x").items() == [("stop", "x")]
    bad: list[dict[str, Any]] = [
        {"temperature": "hot"},
        {"temperature": True},
        {"top_p": float("nan")},
        {"top_k": -1},
        {"top_k": 1.5},
        {"seed": "7"},
        {"stop": [1]},
        {"stop": 3},
        {"presence_penalty": "x"},
    ]
    for kw in bad:
        name = next(iter(kw))
        with pytest.raises(InvalidRequest, match=name):
            Sampling(**kw)


def test_swarm_terms_check_each_term() -> None:
    t = SwarmTerms(
        quorum=3,
        bid_msats=0,
        max_sats=10,
        timeout_s=2.5,
        comparator=exact(),
        targets=["ab" * 32],
        encrypt="nip44",
        sealing="require",
        commit_reveal=True,
        job_params={"language": "de", "n": 2},
        hold=Gate(),
    )
    assert t.targets == ("ab" * 32,)
    assert t.given() == (
        "quorum",
        "bid_msats",
        "max_sats",
        "timeout_s",
        "comparator",
        "targets",
        "encrypt",
        "sealing",
        "commit_reveal",
        "job_params",
        "hold",
    )
    assert SwarmTerms().given() == () and SwarmTerms(comparator="auto").given() == ("comparator",)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"quorum": 0}, "quorum"),
        ({"quorum": True}, "quorum"),
        ({"bid_msats": -1}, "bid_msats"),
        ({"max_sats": 1.5}, "max_sats"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"comparator": ""}, "comparator"),
        ({"comparator": 3}, "comparator"),
        ({"targets": "ab"}, "targets"),
        ({"targets": [""]}, "targets"),
        ({"encrypt": 1}, "encrypt"),
        ({"encrypt": "rot13"}, "encrypt"),
        ({"sealing": "always"}, "sealing"),
        ({"commit_reveal": 1}, "commit_reveal"),
        ({"job_params": {"a": [1]}}, "job_params"),
        ({"job_params": {"a": True}}, "job_params"),
        ({"hold": object()}, "hold"),
    ]
    for kw, name in bad:
        with pytest.raises(InvalidRequest, match=name):
            SwarmTerms(**kw)


def test_a_request_is_checked_when_built() -> None:
    req = LmRequest("m", TextPrompt("p"), 9, passthrough={"tools": [], "user": "u"})
    assert req.swarm is None and req.sampling is NO_SAMPLING
    assert req.upstream_params() == {"tools": [], "user": "u"}
    with_sampling = LmRequest("m", "p", sampling=Sampling(seed=1), passthrough={"x": 1})
    assert with_sampling.max_tokens == 256
    assert with_sampling.upstream_params() == {"seed": 1, "x": 1}
    for args, message in [
        (("", "p"), "model"),
        (("m", []), "messages must not be empty"),
        (("m", [{"content": "no role"}]), "role"),
        (("m", 5), "prompt must be"),
        (("m", "p", 0), "max_tokens"),
        (("m", "p", True), "max_tokens"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            LmRequest(*args)
    # a field with a home of its own cannot come in through passthrough, under any owner
    for name in ("temperature", "quorum", "bid_sats", "max_tokens", "stream", "model"):
        with pytest.raises(InvalidRequest, match=repr(name)):
            LmRequest("m", "p", passthrough={name: 1})
    with pytest.raises(InvalidRequest, match="max_tokens_field"):
        LmRequest("m", "p", max_tokens_field="limit")  # type: ignore[arg-type]
