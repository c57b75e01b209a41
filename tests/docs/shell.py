"""Turn a ```sh block from the docs into the bash script the harness runs. Pure: text in, text out.

What changes (and nothing else; tests/docs/README.md states the same rules):

- ``CMD &``: the server starts in the background and the script goes on once the server has
  printed its first line (every long-running ``swarm`` command prints one when it is ready), so a
  following command never races it. It is stopped when the block ends.
- a known server command in the foreground (``swarm relay``, ``swarm serve``, ``swarm provider
  run``, ``swarm wallet serve``, ``python -m relay_mock``; a reader stops it with Ctrl-C): it is
  started, waited for until ready, then stopped with SIGTERM, and must exit 0.
- the script runs with ``set -e -o pipefail``: every command must succeed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

# Commands that serve until interrupted, and the line they print when ready (a regex).
SERVERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^swarm relay\b"), "."),
    (re.compile(r"^python3? -m relay_mock\b"), "."),
    (re.compile(r"^swarm serve\b(?!.*--check)"), "."),
    (re.compile(r"^swarm provider run\b"), "."),
    (re.compile(r"^swarm wallet serve\b"), "."),
    (re.compile(r"^swarm demo\b.*--keep-running"), "^wallet URI:"),
)

PREAMBLE = r"""set -e -o pipefail
trap 'echo "doc-test: command failed (exit $?): $BASH_COMMAND" >&2' ERR
# Servers stop in the reverse order of their start (as a reader would stop them), so a provider
# can still say goodbye on a relay that is still there; then whatever else is left.
__servers=()
__cleanup() {
  local rc=$? i pids
  for ((i = ${#__servers[@]} - 1; i >= 0; i--)); do
    { kill -TERM "${__servers[i]}" 2>/dev/null && wait "${__servers[i]}" 2>/dev/null; } || true
  done
  pids=$(jobs -p)
  if [ -n "$pids" ]; then kill -TERM $pids 2>/dev/null || true; wait $pids 2>/dev/null || true; fi
  exit $rc
}
trap __cleanup EXIT
# __bg_open: a fresh number N and fifo for the next server (a loop may start several).
__n=0
__bg_open() {
  __n=$((__n + 1))
  mkfifo "$__DT/bg$__n.fifo"
}
# __ready PID N PATTERN LABEL: read the server's output until a line matches PATTERN.
__ready() {
  local pid=$1 n=$2 pat=$3 label=$4 line fd
  exec {fd}<"$__DT/bg$n.fifo"
  while IFS= read -r -t 60 -u "$fd" line; do
    printf '%s\n' "$line"
    if [[ $line =~ $pat ]]; then
      cat <&"$fd" >>"$__DT/bg$n.out" &
      exec {fd}<&-
      return 0
    fi
  done
  echo "doc-test: $label did not become ready; its stderr:" >&2
  cat "$__DT/bg$n.err" >&2
  return 1
}
# __stop PID N LABEL: what Ctrl-C does for a reader; the server must exit 0.
__stop() {
  local rc=0
  kill -TERM "$1"
  wait "$1" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "doc-test: $3 exited $rc when stopped; its stderr:" >&2
    cat "$__DT/bg$2.err" >&2
    return 1
  fi
}
"""


@dataclass(frozen=True, slots=True)
class Line:
    code: str  # the command text without a trailing comment
    comment: str  # "" or the comment, starting with "#"


def split_comment(line: str) -> Line:
    """Split off a trailing ``# comment`` that bash would ignore (not one inside quotes or a
    word such as ``a#b``)."""
    quote = ""
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
            continue
        if ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t;&|("):
            return Line(line[:i].rstrip(), line[i:])
    return Line(line.rstrip(), "")


def command_words(code: str) -> list[str]:
    """The words of a simple command after leading ``NAME=value`` assignments."""
    try:
        words = shlex.split(code)
    except ValueError:
        return code.split()
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words.pop(0)
    return words


def server_pattern(code: str) -> str | None:
    """The ready pattern when ``code`` runs a known server, else None."""
    text = " ".join(command_words(code))
    for rx, ready in SERVERS:
        if rx.search(text):
            return ready
    return None


HEREDOC = "\0heredoc"
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_]\w*)\2")


def logical_lines(text: str) -> list[list[str]]:
    """Physical lines grouped into commands (backslash continuations kept together). A heredoc's
    body follows its command as a group of its own that starts with ``HEREDOC`` and is copied
    verbatim."""
    groups: list[list[str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        group = [lines[i]]
        while group[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            group.append(lines[i])
        groups.append(group)
        i += 1
        heredoc = _HEREDOC.search(split_comment(group[-1]).code)
        if heredoc:
            strip_tabs, word = heredoc.group(1) == "-", heredoc.group(3)
            body: list[str] = []
            while i < len(lines):
                body.append(lines[i])
                i += 1
                if (body[-1].lstrip("\t") if strip_tabs else body[-1]) == word:
                    break
            groups.append([HEREDOC, *body])
    return groups


def to_script(text: str) -> str:
    """The bash script for one ```sh block (see the module docstring)."""
    out: list[str] = [PREAMBLE]
    for group in logical_lines(text):
        if group[0] == HEREDOC:
            out.extend(group[1:])
            continue
        last = split_comment(group[-1])
        whole = " ".join(g.rstrip("\\") for g in group[:-1]) + " " + last.code
        whole = whole.strip()
        background = whole.endswith("&") and not whole.endswith("&&")
        code = whole[:-1].rstrip() if background else whole
        ready = server_pattern(code)
        if not background and ready is None:
            out.extend(group)
            continue
        label = shlex.quote(code)
        head = group[:-1]
        tail = last.code[:-1].rstrip() if background else last.code
        pattern = shlex.quote(ready or ".")
        out.append("__bg_open")
        out.extend(head)
        start = f'{tail} >"$__DT/bg$__n.fifo" 2>"$__DT/bg$__n.err" &'
        out.append(f"{start} __pid=$!; __servers+=($__pid); __ready $__pid $__n {pattern} {label}")
        if not background:
            out.append(f"__stop $__pid $__n {label}")
    return "\n".join(out) + "\n"
