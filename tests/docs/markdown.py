"""Read a Markdown file into its fenced code blocks and the doc-test directives attached to them.

Pure: text in, values out. The convention it reads is described in tests/docs/README.md.

A directive lives in an HTML comment (invisible when rendered, visible in the source):

    <!-- doc-test: replace wss://relay.damus.io => $RELAY -->
    ```sh
    swarm ask "hi" --relay wss://relay.damus.io
    ```

``doc-test:`` applies to the next fenced block (only blank lines may come between);
``doc-test-all:`` applies to every block of the file. A comment may hold several directives, one
per line::

    <!-- doc-test:
    replace wss://relay.damus.io => $RELAY
    env SWARM_NWC=$NWC
    -->
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

VERBS = ("replace", "env", "background", "compile-only")
SHELL_LANGS = ("sh", "bash", "shell")

_FENCE = re.compile(r"^ {0,3}(```+)\s*([\w+-]*)")
_OPEN = re.compile(r"^\s*<!--\s*(doc-test(?:-all)?):(.*)$")


@dataclass(frozen=True, slots=True)
class Directive:
    verb: str
    arg: str
    line: int  # 1-based line of the directive in the Markdown file

    def replacement(self) -> tuple[str, str]:
        """``replace OLD => NEW`` as (OLD, NEW)."""
        old, _, new = self.arg.partition(" => ")
        return old.strip(), new.strip()


@dataclass(frozen=True, slots=True)
class Block:
    path: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directives: tuple[Directive, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELL_LANGS


@dataclass(slots=True)
class Document:
    path: str
    blocks: list[Block] = field(default_factory=list)
    file_directives: list[Directive] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # malformed or dangling directives
    prose: str = ""  # the text outside code blocks (for inline `code` spans)


def _parse_directive(body: str, line: int, path: str, errors: list[str]) -> Directive | None:
    body = body.strip()
    if not body:
        return None
    verb, _, arg = body.partition(" ")
    arg = arg.strip()
    if verb not in VERBS:
        errors.append(f"{path}:{line}: unknown doc-test directive {verb!r} (known: {VERBS})")
        return None
    if verb == "replace" and (" => " not in arg or not arg.partition(" => ")[0].strip()):
        errors.append(f"{path}:{line}: write `replace OLD => NEW`")
        return None
    if verb == "env" and not re.fullmatch(r"[A-Za-z_]\w*=.*", arg):
        errors.append(f"{path}:{line}: write `env NAME=VALUE`")
        return None
    if verb in ("background", "compile-only") and not arg:
        errors.append(f"{path}:{line}: `{verb}` needs an argument (a command / a reason)")
        return None
    return Directive(verb, arg, line)


def parse(text: str, path: str) -> Document:
    doc = Document(path)
    lines = text.splitlines()
    pending: list[Directive] = []
    pending_line = 0
    prose: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        opened = _OPEN.match(line)
        if opened:
            scope, rest = opened.group(1), opened.group(2)
            found: list[Directive] = []
            start = i
            # Single line: `<!-- doc-test: verb arg -->`; else directives until `-->`.
            while True:
                body, closed, _ = rest.partition("-->")
                d = _parse_directive(body, i + 1, path, doc.errors)
                if d is not None:
                    found.append(d)
                if closed:
                    break
                i += 1
                if i >= len(lines):
                    doc.errors.append(f"{path}:{start + 1}: doc-test comment is never closed")
                    break
                rest = lines[i]
            if scope == "doc-test-all":
                doc.file_directives.extend(found)
            else:
                if pending:
                    doc.errors.append(f"{path}:{pending_line}: doc-test directives with no block")
                pending, pending_line = found, start + 1
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            ticks, lang = fence.group(1), fence.group(2).lower()
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith(ticks):
                body.append(lines[j])
                j += 1
            doc.blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n", tuple(pending)))
            pending = []
            i = j + 1
            continue
        if pending and line.strip():
            doc.errors.append(
                f"{path}:{pending_line}: doc-test directives must come right before a code block"
            )
            pending = []
        prose.append(line)
        i += 1
    if pending:
        doc.errors.append(f"{path}:{pending_line}: doc-test directives with no block after them")
    doc.prose = "\n".join(prose)
    return doc


# --- what the docs name ------------------------------------------------------------------------

_INLINE = re.compile(r"`([^`\n]+)`")
_SWARM = re.compile(r"(?<![\w.-])swarm((?: +[a-z][a-z0-9-]*){1,2})(?![\w:/.-])")


def swarm_mentions(doc: Document) -> set[tuple[str, ...]]:
    """Every ``swarm SUB [ACTION]`` written as a command: in inline code spans and in shell or
    untyped code blocks. The second word is kept when present; the caller decides whether it is
    an action of SUB."""
    texts = _INLINE.findall(doc.prose)
    texts += [b.text for b in doc.blocks if b.is_shell or b.lang in ("", "text", "ini")]
    found: set[tuple[str, ...]] = set()
    for text in texts:
        for m in _SWARM.finditer(text):
            words = m.group(1).split()
            found.add(tuple(words[:2]))
    return found


_COMMANDISH = re.compile(
    r"^\s*(?:\$\s+)?(?:swarm [a-z][a-z-]*(?:\s|$)|python3? (?:-m |bench/|\S+\.py)|pip3? install"
    r"|curl |bash |export [A-Z_]+=|\.venv/bin/)"
)


def commands_outside_shell_blocks(doc: Document) -> list[str]:
    """Lines in untyped/text blocks that look like commands a reader would type: those belong in
    ```sh blocks, where they are run."""
    out: list[str] = []
    for b in doc.blocks:
        if b.is_shell or b.lang not in ("", "text", "console"):
            continue
        for k, line in enumerate(b.text.splitlines()):
            if _COMMANDISH.match(line) and not re.match(r"^\s*swarm [a-z-]+:", line):
                out.append(f"{b.path}:{b.line + 1 + k}: {line.strip()}")
    return out


# --- links -------------------------------------------------------------------------------------

_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", flags=re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(doc: Document) -> set[str]:
    return {slug(h) for h in _HEADING.findall(doc.prose)}


def links(doc: Document) -> list[str]:
    """Relative link targets in the prose (``file.md``, ``file.md#anchor``, ``#anchor``)."""
    return [t for t in _LINK.findall(doc.prose) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]
