"""LmRouter end to end over MockBackends: routing order, failover, retries, breakers, rate
limits, streaming, usage and metrics. Time is a ManualClock; retry waits go to a recording
sleeper, so nothing here sleeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from router import LmRequest, LmResponse, LmRouter, ManualClock, RecordingSleeper, Sampling
from router.backends import LmBackend, MockBackend
from router.errors import (
    AllProvidersFailed,
    BackendError,
    BackendNotFound,
    CircuitBreakerOpen,
    InvalidRequest,
    NoProvidersAvailable,
    RateLimited,
    StreamInterrupted,
)
from router.state import BackendState


def fatal() -> BackendError:
    return BackendError("bad credentials", status=401)  # the operator's fault, not the caller's


# --- routing order ------------------------------------------------------------------------------


async def test_readme_example_routes_explicit_then_default() -> None:
    fm = MockBackend("fm-bridge").with_response("from fm").with_usage(100, 50)
    test = MockBackend().with_model("test-model").with_response("from mock")
    router = (
        LmRouter.builder()
        .add_backend(fm)
        .add_backend(test)
        .route_model("gpt-4", "fm-bridge")
        .default_backend("fm-bridge")
        .build()
    )
    resp = await router.complete("gpt-4", "Hello, world!", 100)
    assert (resp.text, resp.backend, resp.model) == ("from fm", "fm-bridge", "gpt-4")
    assert resp.usage.total_tokens == 150
    assert (await router.complete("test-model", "hi", 10)).backend == "mock"  # supports it
    assert (await router.complete("unknown", "hi", 10)).backend == "fm-bridge"  # the default


async def test_route_decision_reasons_and_chain() -> None:
    a = MockBackend("a").with_model("m")
    b = MockBackend("b").with_model("m")
    c = MockBackend("c")
    router = (
        LmRouter.builder()
        .add_backend(a, priority=1)
        .add_backend(b, priority=0)
        .add_backend(c)
        .route_model("pinned", "c", "a")
        .default_backend("c")
        .strategy("priority")
        .build()
    )
    d = router.route("m")
    assert d.backend == "b" and d.fallback_chain == ["a", "c"]  # priority, then the default
    p = router.route("pinned")
    assert p.backend == "c" and p.fallback_chain == ["a"]
    assert "explicit route" in p.reason and p.score == 1.0
    assert "default backend 'c'" in router.route("other").reason


async def test_backend_not_found_without_default() -> None:
    router = LmRouter.builder().add_backend(MockBackend().with_model("m")).build()
    with pytest.raises(BackendNotFound) as err:
        await router.complete("gpt-4", "hi", 10)
    assert err.value.model == "gpt-4"


async def test_glob_routes() -> None:
    swarm = MockBackend("swarm")
    local = MockBackend("local").with_any_model()
    router = (
        LmRouter.builder()
        .add_backend(local)
        .add_backend(swarm)
        .route_model("swarm/*", "swarm")
        .build()
    )
    assert (await router.complete("swarm/llama3", "x", 5)).backend == "swarm"
    assert (await router.complete("llama3", "x", 5)).backend == "local"


def test_builder_rejects_bad_configuration() -> None:
    with pytest.raises(InvalidRequest):
        LmRouter.builder().build()
    with pytest.raises(InvalidRequest, match="unknown backend"):
        LmRouter.builder().add_backend(MockBackend()).route_model("m", "nope").build()
    with pytest.raises(InvalidRequest, match="unknown backend"):
        LmRouter.builder().add_backend(MockBackend()).default_backend("nope").build()
    with pytest.raises(InvalidRequest, match="two backends"):
        LmRouter.builder().add_backend(MockBackend()).add_backend(MockBackend()).build()
    with pytest.raises(TypeError):
        LmRouter.builder().add_backend("not a backend")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        LmRouter.builder().add_backend(MockBackend(), max_concurrent=0)


async def test_invalid_requests_are_refused_before_any_backend_is_called() -> None:
    m = MockBackend()
    router = LmRouter.builder().add_backend(m).default_backend("mock").build()
    for args in (
        ("", "hi", 5),
        ("m", "hi", 0),
        ("m", [], 5),
        ("m", [{"content": "x"}], 5),
        ("m", 42, 5),
    ):
        with pytest.raises(InvalidRequest):
            await router.complete(*args)  # type: ignore[arg-type]
    assert m.calls == 0


async def test_chat_messages_pass_through() -> None:
    m = MockBackend().with_response("You said: {prompt}")
    router = LmRouter.builder().add_backend(m).build()
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    resp = await router.complete("mock-model", msgs, 10, sampling=Sampling(temperature=0.2))
    assert resp.text == "You said: be brief\nhi"
    assert m.last_request is not None and m.last_request.sampling == Sampling(temperature=0.2)
    assert m.last_request.prompt == msgs and m.last_request.max_tokens == 10


# --- failover and retries -----------------------------------------------------------------------


def two_backends(
    primary: MockBackend, secondary: MockBackend, sleeper: RecordingSleeper | None = None, **kw: Any
) -> LmRouter:
    b = (
        LmRouter.builder()
        .add_backend(primary, priority=0)
        .add_backend(secondary, priority=1)
        .strategy("priority")
        .sleeper(sleeper or RecordingSleeper())
        .clock(ManualClock())
    )
    if kw:
        b.retry(**kw)
    return b.build()


async def test_fails_over_on_a_non_retryable_error_without_retrying() -> None:
    primary = MockBackend("primary").with_model("m").fail_next(1, error=fatal)
    secondary = MockBackend("secondary").with_model("m").with_response("backup")
    sleeper = RecordingSleeper()
    router = two_backends(primary, secondary, sleeper)
    resp = await router.complete("m", "hi", 10)
    assert (resp.text, resp.backend) == ("backup", "secondary")
    assert primary.calls == 1 and sleeper.delays == []
    m = router.metrics()
    assert (m["primary"].requests, m["primary"].failures, m["secondary"].successes) == (1, 1, 1)


async def test_retries_retryable_errors_with_the_backoff_schedule() -> None:
    primary = MockBackend("primary").with_model("m").fail_next(2)
    secondary = MockBackend("secondary").with_model("m")
    sleeper = RecordingSleeper()
    router = two_backends(
        primary, secondary, sleeper, max_attempts=3, initial_backoff_s=0.5, jitter=0
    )
    resp = await router.complete("m", "hi", 10)
    assert resp.backend == "primary" and primary.calls == 3 and secondary.calls == 0
    assert sleeper.delays == pytest.approx([0.5, 1.0])


async def test_retries_exhausted_then_fails_over() -> None:
    primary = MockBackend("primary").with_model("m").with_failure(1.0)
    secondary = MockBackend("secondary").with_model("m")
    sleeper = RecordingSleeper()
    router = two_backends(
        primary, secondary, sleeper, max_attempts=2, initial_backoff_s=0.1, jitter=0
    )
    resp = await router.complete("m", "hi", 10)
    assert resp.backend == "secondary" and primary.calls == 2
    assert sleeper.delays == pytest.approx([0.1])


async def test_retry_after_is_honoured_and_too_long_means_failover() -> None:
    primary = (
        MockBackend("primary")
        .with_model("m")
        .fail_next(1, lambda: RateLimited("429", retry_after=4))
    )
    secondary = MockBackend("secondary").with_model("m")
    sleeper = RecordingSleeper()
    router = two_backends(
        primary, secondary, sleeper, initial_backoff_s=0.1, jitter=0, max_retry_after_s=10
    )
    assert (await router.complete("m", "hi", 10)).backend == "primary"
    assert sleeper.delays == pytest.approx([4.0])
    primary.fail_next(1, lambda: RateLimited("429", retry_after=60))
    assert (await router.complete("m", "hi", 10)).backend == "secondary"
    assert sleeper.delays == pytest.approx([4.0])  # no wait: it failed over instead


async def test_single_backend_failure_raises_its_own_error() -> None:
    m = MockBackend().fail_next(1, error=fatal)
    router = LmRouter.builder().add_backend(m).build()
    with pytest.raises(BackendError, match="bad credentials") as err:
        await router.complete("mock-model", "x", 5)
    assert not isinstance(err.value, AllProvidersFailed)


async def test_all_providers_failed_carries_each_error() -> None:
    a = MockBackend("a").with_model("m").fail_next(1, error=fatal)
    b = MockBackend("b").with_model("m").fail_next(1, error=lambda: ValueError("broken backend"))
    router = two_backends(a, b)
    with pytest.raises(AllProvidersFailed) as err:
        await router.complete("m", "x", 5)
    assert list(err.value.errors) == ["a", "b"]
    assert isinstance(err.value.errors["b"], ValueError)
    assert isinstance(err.value, BackendError)


async def test_per_attempt_timeout_fails_over() -> None:
    stuck = MockBackend("stuck").with_model("m").with_gate(asyncio.Event())  # never released
    ok = MockBackend("ok").with_model("m")
    router = (
        LmRouter.builder()
        .add_backend(stuck, priority=0, timeout_s=0.05)
        .add_backend(ok, priority=1)
        .strategy("priority")
        .retry(max_attempts=1)
        .build()
    )
    resp = await asyncio.wait_for(router.complete("m", "x", 5), 5)
    assert resp.backend == "ok"
    assert router.metrics()["stuck"].failures == 1 and router.metrics()["stuck"].in_flight == 0


# --- circuit breaker ----------------------------------------------------------------------------


async def test_breaker_opens_skips_probes_and_closes() -> None:
    clock = ManualClock(1000.0)
    flaky = MockBackend("flaky").with_model("m").with_failure(1.0, error=fatal)
    steady = MockBackend("steady").with_model("m")
    router = (
        LmRouter.builder()
        .add_backend(flaky, priority=0)
        .add_backend(steady, priority=1)
        .strategy("priority")
        .circuit_breaker(failure_threshold=2, window_s=60, reset_timeout_s=30)
        .clock(clock)
        .build()
    )
    for _ in range(2):
        assert (await router.complete("m", "x", 5)).backend == "steady"
    assert flaky.calls == 2 and router.breaker_state("flaky") == "open"
    assert router.route("m").backend == "steady"  # open breakers are not candidates
    await router.complete("m", "x", 5)
    assert flaky.calls == 2  # skipped while open
    clock.advance(30)
    assert router.breaker_state("flaky") == "half_open"
    flaky.with_failure(0.0)
    assert (await router.complete("m", "x", 5)).backend == "flaky"  # the probe succeeds
    assert router.breaker_state("flaky") == "closed"
    assert router.metrics()["flaky"].breaker_trips == 1


async def test_all_breakers_open_raises_circuit_breaker_open() -> None:
    clock = ManualClock()
    m = MockBackend().with_failure(1.0, error=fatal)
    router = (
        LmRouter.builder()
        .add_backend(m)
        .circuit_breaker(failure_threshold=1, reset_timeout_s=10)
        .clock(clock)
        .build()
    )
    with pytest.raises(BackendError):
        await router.complete("mock-model", "x", 5)
    clock.advance(4)
    with pytest.raises(CircuitBreakerOpen) as err:
        await router.complete("mock-model", "x", 5)
    assert err.value.backends == ["mock"] and err.value.retry_after == pytest.approx(6)
    assert m.calls == 1


async def test_half_open_admits_a_single_probe_among_concurrent_requests() -> None:
    clock = ManualClock()
    gate = asyncio.Event()
    m = MockBackend("m1").fail_next(1, error=fatal)
    other = MockBackend("m2")
    router = (
        LmRouter.builder()
        .add_backend(m, priority=0)
        .add_backend(other, priority=1)
        .strategy("priority")
        .circuit_breaker(failure_threshold=1, reset_timeout_s=5)
        .clock(clock)
        .build()
    )
    await router.complete("mock-model", "x", 5)  # m1 fails and trips; m2 answers
    clock.advance(5)
    m.with_gate(gate)
    probe = asyncio.create_task(router.complete("mock-model", "x", 5))
    await asyncio.wait_for(m.wait_for_in_flight(1), 5)  # the probe reached the backend
    second = await router.complete("mock-model", "x", 5)
    assert second.backend == "m2"  # the probe slot is taken
    gate.set()
    assert (await probe).backend == "m1"
    assert router.breaker_state("m1") == "closed"


# --- rate limits --------------------------------------------------------------------------------


async def test_token_bucket_limits_requests_and_spills_over() -> None:
    clock = ManualClock()
    a = MockBackend("a").with_model("m")
    b = MockBackend("b").with_model("m")
    router = (
        LmRouter.builder()
        .add_backend(a, priority=0, requests_per_second=1, burst=2)
        .add_backend(b, priority=1)
        .strategy("priority")
        .clock(clock)
        .build()
    )
    used = [(await router.complete("m", "x", 5)).backend for _ in range(3)]
    assert used == ["a", "a", "b"]
    clock.advance(1.0)
    assert (await router.complete("m", "x", 5)).backend == "a"
    assert router.metrics()["a"].rate_limited == 1


async def test_rate_limited_everywhere_raises_with_retry_after() -> None:
    clock = ManualClock()
    router = (
        LmRouter.builder().add_backend(MockBackend(), requests_per_second=0.5).clock(clock).build()
    )
    await router.complete("mock-model", "x", 5)
    with pytest.raises(RateLimited) as err:
        await router.complete("mock-model", "x", 5)
    assert err.value.retry_after == pytest.approx(2.0)
    clock.advance(2.0)
    await router.complete("mock-model", "x", 5)


async def test_max_concurrent_refuses_without_queue() -> None:
    gate = asyncio.Event()
    m = MockBackend().with_gate(gate)
    router = LmRouter.builder().add_backend(m, max_concurrent=1).build()
    first = asyncio.create_task(router.complete("mock-model", "x", 5))
    await asyncio.wait_for(m.wait_for_in_flight(1), 5)
    with pytest.raises(RateLimited):
        await router.complete("mock-model", "x", 5)
    gate.set()
    await first
    assert router.metrics()["mock"].rate_limited == 1


async def test_max_concurrent_queues_when_asked_and_never_exceeds_the_cap() -> None:
    gate = asyncio.Event()
    m = MockBackend().with_gate(gate)
    router = LmRouter.builder().add_backend(m, max_concurrent=2).queue_timeout(30).build()
    tasks = [asyncio.create_task(router.complete("mock-model", f"p{i}", 5)) for i in range(6)]
    await asyncio.wait_for(m.wait_for_in_flight(2), 5)
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert len(results) == 6 and m.max_in_flight == 2
    assert router.usage_report().total_calls == 6


async def test_cancelled_request_frees_its_slot() -> None:
    gate = asyncio.Event()
    m = MockBackend().with_gate(gate)
    router = LmRouter.builder().add_backend(m, max_concurrent=1).build()
    task = asyncio.create_task(router.complete("mock-model", "x", 5))
    await asyncio.wait_for(m.wait_for_in_flight(1), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    m.with_gate(None)
    assert (await router.complete("mock-model", "x", 5)).text == "Mock response"
    assert router.metrics()["mock"].in_flight == 0


# --- streaming ----------------------------------------------------------------------------------


async def test_stream_fails_over_before_the_first_token() -> None:
    a = MockBackend("a").with_model("m").fail_next(1, error=fatal)
    b = MockBackend("b").with_model("m").with_response("hello there world")
    router = two_backends(a, b)
    parts = [p async for p in router.stream("m", "x", 10)]
    assert "".join(parts) == "hello there world" and len(parts) == 3
    assert router.usage_report().by_backend["b"].call_count == 1


async def test_stream_error_after_the_first_token_reaches_the_caller() -> None:
    a = MockBackend("a").with_model("m").with_response("one two three").with_stream_failure(2)
    b = MockBackend("b").with_model("m")
    router = two_backends(a, b)
    got: list[str] = []
    with pytest.raises(StreamInterrupted) as err:
        async for p in router.stream("m", "x", 10):
            got.append(p)
    assert got == ["one", " two"] and err.value.text_so_far == "one two"
    assert b.calls == 0
    assert router.metrics()["a"].failures == 1 and router.metrics()["a"].in_flight == 0


async def test_stream_usage_and_early_stop() -> None:
    m = MockBackend().with_response("a b c d").with_usage(3, 4)
    router = LmRouter.builder().add_backend(m, max_concurrent=1).build()
    chunks = [c async for c in router.stream_chunks("mock-model", "x", 10)]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7
    assert router.usage_report().total_tokens == 7
    agen = router.stream("mock-model", "x", 10)
    assert await agen.__anext__() == "a"
    await agen.aclose()  # the caller stops early: the slot is freed, no outcome counted
    assert router.metrics()["mock"].in_flight == 0
    assert (await router.complete("mock-model", "x", 5)).text == "a b c d"


async def test_an_open_stream_names_its_backend_and_decision_before_the_first_chunk() -> None:
    a = MockBackend("a").with_model("m").fail_next(1, error=fatal)
    b = MockBackend("b").with_model("m").with_response("hello there")
    router = two_backends(a, b)
    stream = await router.open_stream(LmRequest("m", "x", 10))
    # decided and started (after a's failure), nothing read yet
    assert stream.backend == "b" and stream.decision.backend == "a"
    assert router.metrics()["b"].in_flight == 1
    async with stream:
        assert [c.text async for c in stream] == ["hello", " there", ""]
    assert router.metrics()["b"].in_flight == 0
    assert router.usage_report().by_backend["b"].call_count == 1
    unread = await router.open_stream(LmRequest("m", "x", 10))
    await unread.aclose()  # closed before any chunk was read: the slot is freed all the same
    await unread.aclose()
    assert router.metrics()["b"].in_flight == 0
    assert router.usage_report().by_backend["b"].call_count == 1  # no outcome counted


async def test_a_response_carries_the_decision_that_routed_it() -> None:
    a = MockBackend("a").with_model("m").fail_next(1, error=fatal)
    b = MockBackend("b").with_model("m")
    router = two_backends(a, b)
    resp = await router.complete("m", "x", 5)
    assert resp.backend == "b" and resp.decision is not None
    assert resp.decision.backend == "a" and [s.name for s in resp.decision.candidates] == ["a", "b"]
    direct = await b.complete("m", "x", 5)
    assert direct.decision is None  # a backend asked directly made no routing decision


async def test_a_misspelled_option_is_a_type_error_before_anything_is_sent() -> None:
    m = MockBackend()
    router = LmRouter.builder().add_backend(m).build()
    with pytest.raises(TypeError, match="temprature"):
        await router.complete("mock-model", "x", 5, temprature=0.2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="temprature"):
        Sampling(temprature=0.2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="temprature"):
        async for _ in router.stream("mock-model", "x", 5, temprature=0.2):  # type: ignore[call-arg]
            pass
    with pytest.raises(InvalidRequest, match="'temperature'"):  # a sampling option as a field
        await router.complete("mock-model", "x", 5, passthrough={"temperature": 0.2})
    assert m.calls == 0


# --- usage, cost and metrics --------------------------------------------------------------------


async def test_usage_report_by_model_and_backend() -> None:
    a = MockBackend("a").with_models("m1", "m2").with_usage(10, 5)
    b = MockBackend("b").with_model("m3").with_usage(1, 1).with_cost(usd=0.5, sats=21)
    router = LmRouter.builder().add_backend(a).add_backend(b).build()
    for model in ("m1", "m1", "m2", "m3"):
        await router.complete(model, "x", 5)
    rep = router.usage_report()
    assert (rep.total_calls, rep.total_tokens) == (4, 47)
    assert (rep.total_prompt_tokens, rep.total_completion_tokens) == (31, 16)
    assert rep.by_model["m1"].call_count == 2 and rep.by_model["m1"].total_tokens == 30
    assert rep.by_backend["a"].call_count == 3 and rep.by_backend["b"].cost_sats == 21
    assert rep.total_cost_usd == pytest.approx(0.5) and rep.total_cost_sats == 21
    router.reset_usage()
    rep = router.usage_report()
    assert rep.total_calls == 0 and rep.by_model == {}
    assert router.metrics()["a"].requests == 0


async def test_configured_prices_and_sats_conversion() -> None:
    priced = MockBackend("priced").with_model("p").with_usage(1000, 500)
    swarm = MockBackend("swarm").with_model("s").with_usage(10, 10).with_cost(sats=1000)
    router = (
        LmRouter.builder()
        .add_backend(priced, cost_per_1k_input_usd=0.5, cost_per_1k_output_usd=1.5)
        .add_backend(swarm)
        .btc_usd(50_000)
        .build()
    )
    r1 = await router.complete("p", "x", 5)
    assert r1.usage.cost_usd == pytest.approx(0.5 + 0.75)
    r2 = await router.complete("s", "x", 5)
    assert r2.usage.cost_usd == pytest.approx(0.5) and r2.usage.cost_sats == 1000
    rep = router.usage_report()
    assert rep.total_cost_usd == pytest.approx(1.75) and rep.total_cost_sats == 1000
    # the swarm's price per 1k tokens is learned from what it charged: $0.50 / 20 tokens
    assert router.metrics()["swarm"].cost_per_1k_tokens_usd == pytest.approx(25.0)
    assert router.metrics()["priced"].cost_per_1k_tokens_usd == pytest.approx(1.0)


async def test_metrics_count_and_latency_figures() -> None:
    m = MockBackend().fail_next(1, error=fatal)
    router = LmRouter.builder().add_backend(m).build()
    with pytest.raises(BackendError):
        await router.complete("mock-model", "x", 5)
    for _ in range(20):
        await router.complete("mock-model", "x", 5)
    met = router.backend_metrics("mock")
    assert (met.requests, met.successes, met.failures) == (21, 20, 1)
    assert met.avg_latency_ms > 0 and met.p95_latency_ms >= 0 and met.breaker_state == "closed"
    assert 0 < met.error_rate < 0.2  # one early failure, decayed by twenty successes


def test_ewma_learning_and_error_rate() -> None:
    from router.circuit_breaker import BreakerConfig
    from router.options import BackendOptions
    from router.rate_limit import RateLimitConfig
    from router.retry import RetryPolicy

    st = BackendState(
        MockBackend(),
        BackendOptions(latency_hint_ms=100),
        0,
        default_breaker=BreakerConfig(),
        default_rate_limit=RateLimitConfig(),
        default_retry=RetryPolicy(),
    )
    assert st.latency_ms == 100
    st.on_success(80.0, 0.2)
    assert st.latency_ms == 80.0  # the first measurement replaces the hint
    st.on_success(50.0, 0.2)
    assert st.latency_ms == pytest.approx(0.8 * 80 + 0.2 * 50)
    st.on_failure(0.2)
    assert st.error_rate == pytest.approx(0.2)
    st.on_success(50.0, 0.2)
    assert st.error_rate == pytest.approx(0.16)


async def test_adaptive_strategy_moves_traffic_away_from_a_failing_backend() -> None:
    fast = MockBackend("fast").with_model("m").with_failure(1.0, error=fatal)
    slow = MockBackend("slow").with_model("m")
    router = (
        LmRouter.builder()
        .add_backend(fast, latency_hint_ms=50)
        .add_backend(slow, latency_hint_ms=400)
        .strategy("adaptive", optimize="reliability")
        .circuit_breaker(enabled=False)
        .retry(max_attempts=1)
        .build()
    )
    assert router.route("m").backend == "fast"
    for _ in range(5):
        assert (await router.complete("m", "x", 5)).backend == "slow"  # after failing over
    assert router.route("m").backend == "slow"
    assert fast.calls < 5  # it stopped being tried first


async def test_health_check_maps_backend_to_bool() -> None:
    class Broken(MockBackend):
        async def health_check(self) -> bool:
            raise ConnectionError("down")

    down = MockBackend("down")
    down.healthy = False
    router = (
        LmRouter.builder()
        .add_backend(MockBackend("up"))
        .add_backend(down)
        .add_backend(Broken("broken"))
        .build()
    )
    assert await router.health_check() == {"up": True, "down": False, "broken": False}


async def test_disabled_backends_are_not_used() -> None:
    a = MockBackend("a").with_model("m")
    b = MockBackend("b").with_model("m")
    router = LmRouter.builder().add_backend(a, enabled=False).add_backend(b).build()
    assert (await router.complete("m", "x", 5)).backend == "b"
    router.set_enabled("a", True)
    router.set_enabled("b", False)
    assert (await router.complete("m", "x", 5)).backend == "a"
    router.set_enabled("a", False)
    with pytest.raises(NoProvidersAvailable):
        await router.complete("m", "x", 5)


async def test_models_are_discovered_lazily() -> None:
    class Discovering(LmBackend):
        name = "disco"
        models_known = False

        def __init__(self) -> None:
            self.models: list[str] = []
            self.refreshes = 0

        def supported_models(self) -> list[str]:
            return self.models

        async def refresh_models(self) -> list[str]:
            self.refreshes += 1
            self.models = ["late-model"]
            self.models_known = True
            return self.models

        async def send(self, request: LmRequest) -> LmResponse:
            return LmResponse("found", model=request.model)

    d = Discovering()
    router = LmRouter.builder().add_backend(d).build()
    assert (await router.complete("late-model", "x", 5)).text == "found"
    with pytest.raises(BackendNotFound):
        await router.complete("missing", "x", 5)
    assert d.refreshes == 1
    assert router.supported_models() == ["late-model"]


async def test_many_tasks_share_one_router() -> None:
    backends = [MockBackend(f"b{i}").with_model("m").with_usage(2, 3) for i in range(3)]
    b = LmRouter.builder().strategy("round_robin")
    for backend in backends:
        b.add_backend(backend)
    router = b.build()
    results = await asyncio.gather(*(router.complete("m", f"p{i}", 5) for i in range(300)))
    assert len(results) == 300
    assert sorted(x.calls for x in backends) == [100, 100, 100]
    rep = router.usage_report()
    assert rep.total_calls == 300 and rep.total_tokens == 1500
    assert sum(m.successes for m in router.metrics().values()) == 300


async def test_a_router_is_a_backend_of_another_router() -> None:
    inner = (
        LmRouter.builder().add_backend(MockBackend().with_response("inner")).name("inner").build()
    )
    outer = LmRouter.builder().add_backend(inner).build()
    resp = await outer.complete("mock-model", "x", 5)
    assert resp.text == "inner" and resp.backend == "mock"
    assert outer.usage_report().by_backend["inner"].call_count == 1
    assert await outer.health_check() == {"inner": True}


def test_threads_with_their_own_loops_share_one_router() -> None:
    import threading

    class Counting(MockBackend):
        """MockBackend's own counters are not thread-safe; this one only answers."""

        async def send(self, request: LmRequest) -> LmResponse:
            return LmResponse("ok", model=request.model)

    router = (
        LmRouter.builder()
        .add_backend(Counting("a"))
        .add_backend(Counting("b"))
        .strategy("round_robin")
        .build()
    )

    async def burst() -> None:
        for _ in range(300):
            await router.complete("mock-model", "x", 5)

    # Each thread runs its own event loop: nothing in the router may be bound to one loop.
    threads = [threading.Thread(target=asyncio.run, args=(burst(),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert router.usage_report().total_calls == 1200
    metrics = router.metrics()
    assert sum(m.successes for m in metrics.values()) == 1200
    assert sum(m.requests for m in metrics.values()) == 1200
    assert all(m.in_flight == 0 for m in metrics.values())
