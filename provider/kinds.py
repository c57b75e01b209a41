"""The NIP-90 text kinds a node serves from its model, and the prompt each one becomes (pure).

5050 text generation is the prompt as given. The others are what deployed DVMs serve, asked of
the same local model through a template: 5000 text extraction, 5001 summarization, 5002
translation (the target language from the job's ``language`` param, default English)."""

from __future__ import annotations

from collections.abc import Mapping

TEXT_GENERATION = 5050
TEXT_EXTRACTION = 5000
SUMMARIZATION = 5001
TRANSLATION = 5002

TEXT_KINDS: dict[int, str] = {
    TEXT_GENERATION: "text generation",
    TEXT_EXTRACTION: "text extraction",
    SUMMARIZATION: "summarization",
    TRANSLATION: "translation",
}


def check_kinds(kinds: object) -> tuple[int, ...]:
    """The kinds a node is configured to serve, checked: a typed error names a bad one."""
    if not isinstance(kinds, (list, tuple)) or not kinds:
        raise ValueError(f"kinds must be a non-empty list of {sorted(TEXT_KINDS)}")
    out = []
    for k in kinds:
        if type(k) is not int or k not in TEXT_KINDS:
            raise ValueError(f"kind {k!r} is not served; known kinds: {sorted(TEXT_KINDS)}")
        out.append(k)
    return tuple(dict.fromkeys(out))


def prompt_for(kind: int, text: str, params: Mapping[str, str]) -> str:
    """The prompt the model gets for a job of ``kind`` on input ``text``."""
    if kind == TEXT_EXTRACTION:
        return (
            "Extract the plain text of the following input. Answer with the text only, without "
            f"comments.\n\n{text}"
        )
    if kind == SUMMARIZATION:
        return f"Summarize the following text in a few sentences.\n\n{text}"
    if kind == TRANSLATION:
        language = str(params.get("language") or "English").strip()[:40] or "English"
        return (
            f"Translate the following text into {language}. Answer with the translation "
            f"only.\n\n{text}"
        )
    return text
