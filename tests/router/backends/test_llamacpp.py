"""LlamaCppBackend answers real prompts with the bundled SmolLM2-135M-Instruct."""

from __future__ import annotations

import asyncio

import pytest

from router.backends.llamacpp import DEFAULT_MODEL_NAME, LlamaCppBackend, default_model_path
from router.errors import BackendError, InvalidRequest
from router.request import Sampling
from router.types import TextPrompt

pytestmark = pytest.mark.local_model

QUESTION = "What is the capital of France? Answer in one word."


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    return LlamaCppBackend()


async def test_answers_a_real_prompt_deterministically(backend: LlamaCppBackend) -> None:
    first = await backend.complete(DEFAULT_MODEL_NAME, QUESTION, max_tokens=16)
    assert "paris" in first.text.lower()
    assert first.model == DEFAULT_MODEL_NAME and first.backend == "local"
    assert first.usage.prompt_tokens > 10 and 0 < first.usage.completion_tokens <= 16
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    second = await backend.complete(DEFAULT_MODEL_NAME, QUESTION, max_tokens=16)
    assert second.text == first.text  # temperature 0: what a quorum of honest providers needs


async def test_stream_matches_complete_and_counts_tokens(backend: LlamaCppBackend) -> None:
    whole = await backend.complete(DEFAULT_MODEL_NAME, QUESTION, max_tokens=16)
    chunks = [c async for c in backend.stream_chunks(DEFAULT_MODEL_NAME, QUESTION, max_tokens=16)]
    text = "".join(c.text for c in chunks)
    assert text == whole.text
    assert len([c for c in chunks if c.text]) >= 2  # really streamed, not one lump
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens == whole.usage.prompt_tokens
    assert usage.completion_tokens == backend.count_tokens(text)


async def test_chat_messages_and_text_mode(backend: LlamaCppBackend) -> None:
    chat = await backend.complete(
        DEFAULT_MODEL_NAME,
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": QUESTION}],
        max_tokens=12,
    )
    assert chat.text.strip()
    raw = "The capital of France is"
    text = await backend.complete(DEFAULT_MODEL_NAME, TextPrompt(raw), max_tokens=4)
    assert text.text.strip()
    llama = backend._load_sync()
    assert text.usage.prompt_tokens == len(llama.tokenize(raw.encode(), add_bos=True))


async def test_seed_and_temperature_are_honoured(backend: LlamaCppBackend) -> None:
    prompt = "Write one random word."
    hot = Sampling(temperature=1.5, seed=7)
    a = await backend.complete(DEFAULT_MODEL_NAME, prompt, max_tokens=8, sampling=hot)
    b = await backend.complete(DEFAULT_MODEL_NAME, prompt, max_tokens=8, sampling=hot)
    assert a.text == b.text  # same seed, same sample


async def test_errors_are_typed(backend: LlamaCppBackend, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BackendError) as info:
        await backend.complete("gpt-4", QUESTION, max_tokens=4)
    assert info.value.status == 404
    missing = LlamaCppBackend(tmp_path / "nope.gguf")
    with pytest.raises(BackendError, match="not found"):
        await missing.complete("nope", QUESTION, max_tokens=4)
    assert not await missing.health_check()
    assert default_model_path().suffix == ".gguf"


async def test_bounded_queue_answers_busy(backend: LlamaCppBackend) -> None:
    small = LlamaCppBackend(max_queue=1)
    small._llama = backend._llama or backend._load_sync()  # share the loaded model: no reload
    results = await asyncio.gather(
        *(small.complete(DEFAULT_MODEL_NAME, QUESTION, max_tokens=4) for _ in range(3)),
        return_exceptions=True,
    )
    busy = [r for r in results if isinstance(r, BackendError)]
    assert len(busy) == 2 and all(e.retryable and e.status == 503 for e in busy)
    assert sum(1 for r in results if not isinstance(r, BaseException)) == 1


async def test_what_the_embedded_model_cannot_honour_is_refused(backend: LlamaCppBackend) -> None:
    with pytest.raises(InvalidRequest, match="'tools'"):
        await backend.complete(DEFAULT_MODEL_NAME, QUESTION, 4, passthrough={"tools": []})
