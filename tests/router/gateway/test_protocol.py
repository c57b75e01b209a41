"""Pure parts of the gateway: request parsing, SSE encoding, key budgets, error mapping."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from client.nostr.errors import BudgetExceeded
from router.errors import (
    AllProvidersFailed,
    BackendError,
    BackendNotFound,
    CircuitBreakerOpen,
    InvalidRequest,
    QuorumNotReached,
    RateLimited,
)
from router.gateway.auth import KeyStore
from router.gateway.config import ApiKeyConfig
from router.gateway.deadlines import Deadlines
from router.gateway.errors import ApiError
from router.gateway.errors_map import api_error
from router.gateway.protocol import completion_body, completion_json, parse_request
from router.gateway.sse import DONE, ChunkEncoder, error_event
from router.request import Sampling
from router.types import LmResponse, LmUsage


def chat(**body: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}


def test_parse_chat_defaults_and_passthrough() -> None:
    req = parse_request(
        chat(temperature=0.2, stop=["\n"], seed=7, unknown_field=1),
        chat=True,
        default_max_tokens=99,
    )
    assert req.model == "m" and req.max_tokens == 99 and not req.stream
    assert req.prompt == [{"role": "user", "content": "hi"}]
    # sampling options are typed; a parameter the gateway does not know is passed on for the
    # backend to judge
    assert req.sampling == Sampling(temperature=0.2, stop=("\n",), seed=7)
    assert req.passthrough == {"unknown_field": 1}
    assert req.quorum is None and req.bid_sats is None
    lm = req.lm_request("m")
    assert lm.upstream_params() == {
        "temperature": 0.2,
        "stop": ["\n"],
        "seed": 7,
        "unknown_field": 1,
    }
    assert lm.swarm is None and lm.max_tokens_field == "max_tokens"


def test_parse_content_parts_developer_role_and_max_completion_tokens() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ],
        "max_completion_tokens": 5,
        "max_tokens": 50,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    req = parse_request(body, chat=True, default_max_tokens=1)
    assert req.prompt == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    assert req.max_tokens == 5 and req.stream and req.include_usage
    assert req.max_tokens_field == "max_completion_tokens" and req.passthrough == {}


def test_parse_text_completion_prompt_forms() -> None:
    assert (
        parse_request({"model": "m", "prompt": "x"}, chat=False, default_max_tokens=1).prompt == "x"
    )
    assert (
        parse_request({"model": "m", "prompt": ["y"]}, chat=False, default_max_tokens=1).prompt
        == "y"
    )


def test_swarm_terms_from_body_and_headers() -> None:
    req = parse_request(chat(quorum=3, bid_sats=0), chat=True, default_max_tokens=1)
    assert (req.quorum, req.bid_sats) == (3, 0)
    headers = {"x-swarm-quorum": "2", "x-swarm-bid-sats": "21"}
    req = parse_request(chat(), chat=True, default_max_tokens=1, headers=headers)
    assert (req.quorum, req.bid_sats) == (2, 21)
    req = parse_request(chat(quorum=4), chat=True, default_max_tokens=1, headers=headers)
    assert req.quorum == 4  # the body wins


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ({"model": "m", "messages": [{"role": ["user"], "content": "x"}]}, "messages"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(max_tokens="10"), "max_tokens"),
        (chat(n=2), "n"),
        (chat(stream="yes"), "stream"),
        (chat(temperature="hot"), "temperature"),
        (chat(stop=[1]), "stop"),
        (chat(seed=1.5), "seed"),
        (chat(top_k=-1), "top_k"),
        (chat(repetition_penalty="x"), "repetition_penalty"),
        (chat(quorum=0), "quorum"),
        (chat(tools={"type": "function"}), "tools"),
        (chat(tool_choice=3), "tool_choice"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"text": "no type"}]}]},
            "messages[0].content",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "42"}]},
            "messages[0].tool_call_id",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": {}}]},
            "messages[0].tool_calls",
        ),
    ],
)
def test_bad_chat_requests_name_the_param(body: Any, param: str | None) -> None:
    with pytest.raises(ApiError) as e:
        parse_request(body, chat=True, default_max_tokens=1)
    assert e.value.status == 400 and e.value.param == param
    assert e.value.body()["error"]["type"] == "invalid_request_error"


def test_bad_headers_and_prompts() -> None:
    with pytest.raises(ApiError) as e:
        parse_request(chat(), chat=True, default_max_tokens=1, headers={"x-swarm-quorum": "two"})
    assert e.value.param == "x-swarm-quorum"
    for prompt in (["a", "b"], 5, [1, 2]):
        with pytest.raises(ApiError) as e:
            parse_request({"model": "m", "prompt": prompt}, chat=False, default_max_tokens=1)
        assert e.value.param == "prompt"


def _data(event: bytes) -> Any:
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    return json.loads(event[6:-2])


def test_sse_chat_chunks_match_openai() -> None:
    enc = ChunkEncoder(chat=True, model="m", include_usage=True)
    start, text, fin = _data(enc.start()), _data(enc.text('say "hi"\n')), _data(enc.finish(None))
    usage = _data(enc.usage({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}))
    assert start["object"] == "chat.completion.chunk" and start["id"].startswith("chatcmpl-")
    assert start["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert text["choices"][0]["delta"] == {"content": 'say "hi"\n'}
    assert text["choices"][0]["finish_reason"] is None and text["usage"] is None
    assert fin["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 3
    assert len({start["id"], text["id"], fin["id"], usage["id"]}) == 1
    assert DONE == b"data: [DONE]\n\n"


def test_sse_text_chunks_and_no_usage_field_unless_asked() -> None:
    enc = ChunkEncoder(chat=False, model="m", include_usage=False)
    assert enc.start() == b""
    t = _data(enc.text("abc"))
    assert t["object"] == "text_completion" and t["choices"][0]["text"] == "abc"
    assert "usage" not in t
    err = _data(error_event(ApiError(502, "boom", type="server_error")))
    assert err == {
        "error": {"message": "boom", "type": "server_error", "param": None, "code": None}
    }


def test_keys_authenticate() -> None:
    store = KeyStore([ApiKeyConfig(name="a", key="sk-a")])
    assert store.authenticate("Bearer sk-a") is store.accounts["a"]
    for header in (None, "", "Bearer", "Basic sk-a", "Bearer sk-b"):
        with pytest.raises(ApiError) as e:
            store.authenticate(header)
        assert e.value.status == 401 and e.value.code == "invalid_api_key"
    assert KeyStore([]).authenticate(None) is None


def test_budget_sats_reserves_and_caps_the_bid() -> None:
    store = KeyStore([ApiKeyConfig(name="a", key="k", budget_sats=25)])
    acct = store.accounts["a"]
    first, bid = store.reserve([acct.account], bid_sats=10, quorum=2)  # holds 20
    assert bid == 10 and acct.reserved_sats == 20
    second, bid = store.reserve([acct.account], bid_sats=10, quorum=2)  # 5 left: 2 each
    assert bid == 2 and acct.reserved_sats == 24
    with pytest.raises(ApiError) as e:
        store.reserve([acct.account], bid_sats=10, quorum=2)  # 1 left: too little for two
    assert e.value.status == 429 and e.value.code == "insufficient_quota"
    assert "API key 'a' has 1 sats left" in e.value.message
    # paid through the hold as the wallet pays: 12 of 20 sats; the rest is freed on close
    assert first.authorize("h1", 6000) and first.authorize("h2", 6000)
    first.outcome("h1", "paid")
    first.outcome("h2", "paid")
    assert not first.authorize("h3", 8001)  # more than the hold has left: refused
    first.close()
    second.close()
    assert acct.reserved_sats == 0 and acct.spent_sats == 12
    third, _ = store.reserve([acct.account], msats=13_000)
    third.charge(msats=13_000)
    third.close()
    with pytest.raises(ApiError) as e:
        store.reserve([acct.account])
    assert "0 of its 25 sats left (25 spent" in e.value.message


def test_budget_usd() -> None:
    store = KeyStore([ApiKeyConfig(name="a", key="k", budget_usd=0.01)])
    acct = store.accounts["a"]
    hold, _ = store.reserve([acct.account], usd_nanos=5_000_000)
    hold.charge(usd_nanos=11_000_000)  # a cost above the hold is charged in full
    hold.close()
    with pytest.raises(ApiError) as e:
        store.reserve([acct.account])
    assert e.value.status == 429 and "($0.011000 spent)" in e.value.message


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidRequest("bad"), 400, None),
        (BackendNotFound("m"), 404, "model_not_found"),
        (RateLimited("slow down", retry_after=2.5), 429, "rate_limit_exceeded"),
        (RateLimited("upstream 429", status=429), 429, "rate_limit_exceeded"),
        (CircuitBreakerOpen(["a"], retry_after=3), 503, "backend_unavailable"),
        (BackendError("x", status=500), 502, "upstream_error"),
        (BackendError("x", status=400), 400, "upstream_rejected"),
        (BackendError("x", status=401), 502, "upstream_error"),
        (BackendError("x", status=504), 504, "upstream_timeout"),
        (BackendError("a: no answer within 1 s", retryable=True), 504, "upstream_timeout"),
        (TimeoutError(), 504, "gateway_timeout"),
        (QuorumNotReached("no quorum"), 504, "quorum_not_reached"),
        (BudgetExceeded("over"), 429, "insufficient_quota"),
        (
            AllProvidersFailed({"a": BackendError("x", status=500), "b": TimeoutError()}),
            502,
            "upstream_error",
        ),
        (
            AllProvidersFailed({"a": TimeoutError(), "b": BackendError("y", status=504)}),
            504,
            "upstream_timeout",
        ),
        (RuntimeError("bug"), 500, "internal_error"),
    ],
)
def test_error_mapping(exc: BaseException, status: int, code: str | None) -> None:
    err = api_error(exc)
    assert err.status == status and err.code == code


def test_retry_after_headers() -> None:
    assert api_error(RateLimited("x", retry_after=2.1)).headers == {"Retry-After": "3"}
    assert api_error(CircuitBreakerOpen(["a"], retry_after=0.2)).headers == {"Retry-After": "1"}


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("usage", [LmUsage.of(3, 4), LmUsage.of(1, 2, cost_usd=0.25, cost_sats=9)])
def test_completion_json_equals_completion_body(chat: bool, usage: LmUsage) -> None:
    resp = LmResponse('a "quoted"\nanswer \u00e9', usage, "m", "length")
    req = parse_request(
        chat_body() if chat else {"model": "m", "prompt": "p"}, chat=chat, default_max_tokens=1
    )
    fast = json.loads(completion_json(chat, resp, "served-model"))
    slow = completion_body(req, resp, "served-model")
    for obj in (fast, slow):
        obj.pop("id")
        obj.pop("created")
    assert fast == slow


def chat_body() -> dict[str, Any]:
    return chat()


async def test_deadlines_cancel_only_overdue_tasks() -> None:
    now = [100.0]
    d = Deadlines(tick_s=1.0, clock=lambda: now[0])
    never = asyncio.Event()
    slow = asyncio.create_task(never.wait())
    fast = asyncio.create_task(never.wait())
    d.add(slow, 5.0)  # type: ignore[arg-type]
    d.add(fast, 50.0)  # type: ignore[arg-type]
    now[0] = 104.9
    assert d.check() == 0
    now[0] = 105.0
    assert d.overdue(now[0]) == [slow]
    assert d.check() == 1 and d.check() == 0  # cancelled once
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert d.expired(slow) and not d.expired(slow) and not d.expired(fast)
    d.discard(slow)
    d.discard(fast)
    fast.cancel()
    assert d.overdue(1e9) == []
