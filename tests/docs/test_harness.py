"""The doc-test harness itself: directives are read, scripts are built and run as promised, and a
doc that would leave the machine or hide a failure is caught."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .markdown import anchors, commands_outside_shell_blocks, links, parse, slug, swarm_mentions
from .session import DocSession, outside_world
from .shell import split_comment, to_script

FENCE = "```"


def md(*parts: str) -> str:
    return "\n".join(parts) + "\n"


def run(tmp_path: Path, text: str, world: dict[str, str] | None = None) -> list:  # type: ignore[type-arg]
    doc = parse(text, "docs/example.md")
    assert not doc.errors, doc.errors
    return DocSession(doc, tmp_path, world or {}).run()


# --- reading directives ------------------------------------------------------------------------


def test_directives_attach_to_the_next_block_or_the_whole_file() -> None:
    doc = parse(
        md(
            "<!-- doc-test-all: env A=1 -->",
            "text",
            "<!-- doc-test: replace wss://x.example => $RELAY -->",
            "",
            f"{FENCE}sh",
            "swarm ask hi --relay wss://x.example",
            FENCE,
            "<!-- doc-test:",
            "background swarm relay --port 7447",
            "compile-only needs a wallet",
            "-->",
            f"{FENCE}python",
            "print(1)",
            FENCE,
        ),
        "d.md",
    )
    assert doc.errors == []
    first, second = doc.blocks
    assert [(d.verb, d.replacement()) for d in first.directives] == [
        ("replace", ("wss://x.example", "$RELAY"))
    ]
    assert [d.verb for d in second.directives] == ["background", "compile-only"]
    assert [(d.verb, d.arg) for d in doc.file_directives] == [("env", "A=1")]
    assert first.line == 5 and first.is_shell and second.lang == "python"


def test_malformed_and_dangling_directives_are_errors() -> None:
    doc = parse(
        md(
            "<!-- doc-test: skip because -->",
            f"{FENCE}sh",
            "true",
            FENCE,
            "<!-- doc-test: replace nothing-to-replace-with -->",
            "prose in between",
            f"{FENCE}sh",
            "true",
            FENCE,
            "<!-- doc-test: env A=1 -->",
        ),
        "d.md",
    )
    assert len(doc.errors) == 3
    assert "unknown doc-test directive 'skip'" in doc.errors[0]
    assert "replace OLD => NEW" in doc.errors[1]
    assert "no block after them" in doc.errors[2]


def test_commands_in_untyped_blocks_and_swarm_mentions_are_found() -> None:
    doc = parse(
        md(
            "Run `swarm provider run --config x` or `swarm ask`; the swarm answers.",
            FENCE,
            "swarm relay --port 0",
            "swarm serve: error: config.yaml: bad",
            "job 3f2a done",
            FENCE,
        ),
        "d.md",
    )
    assert commands_outside_shell_blocks(doc) == ["d.md:3: swarm relay --port 0"]
    assert swarm_mentions(doc) == {("provider", "run"), ("ask",), ("relay",)}


def test_links_and_heading_anchors() -> None:
    doc = parse(
        md(
            "## 1. Job request (kind 5050) — what the customer sends",
            "See [a](other.md#x), [b](#one), [c](https://example.org/x.md).",
            f"{FENCE}sh",
            "# a comment, not a heading; [d](not-a-link.md)",
            FENCE,
        ),
        "d.md",
    )
    assert links(doc) == ["other.md#x", "#one"]
    assert anchors(doc) == {"1-job-request-kind-5050--what-the-customer-sends"}
    assert slug("`swarm wallet`") == "swarm-wallet"


# --- building scripts --------------------------------------------------------------------------


def test_split_comment_ignores_hashes_in_quotes_and_words() -> None:
    assert split_comment("swarm relay &   # a relay").code == "swarm relay &"
    assert split_comment('echo "a # b" a#b').comment == ""
    assert split_comment("echo 'x' #c").comment == "#c"


def test_servers_are_waited_for_and_heredocs_are_left_alone() -> None:
    script = to_script(
        md(
            "swarm relay --port 7447 &  # relay",
            "cat > x.yaml <<'EOF'",
            "swarm relay &",
            "EOF",
            "swarm wallet serve --db w.db \\",
            "    --relay ws://127.0.0.1:7447",
            "swarm serve --config x.yaml --check",
        )
    )
    body = script.split("__stop() {", 1)[1]
    assert body.count("__servers+=($__pid); __ready $__pid") == 2  # each server waited for
    assert 'swarm relay --port 7447 >"$__DT/bg$__n.fifo"' in body
    assert "\nswarm relay &\nEOF\n" in body  # heredoc body verbatim
    assert "__stop $__pid $__n 'swarm wallet serve" in body  # the foreground one is stopped
    assert "swarm serve --config x.yaml --check\n" in body  # --check is not a server


def test_outside_world_is_named() -> None:
    text = "swarm ask hi --relay wss://relay.damus.io --relay ws://127.0.0.1:7447\npip install x"
    assert outside_world(text) == ["wss://relay.damus.io", "pip install"]
    assert outside_world("curl http://localhost:8080/v1/models") == []


# --- running -----------------------------------------------------------------------------------


def test_a_failing_command_fails_the_block_and_stops_it(tmp_path: Path) -> None:
    [outcome] = run(tmp_path, md(f"{FENCE}sh", "true", "false", "touch after", FENCE))
    assert not outcome.ok
    assert "command failed (exit 1): false" in outcome.detail
    assert not (tmp_path / "after").exists()


def test_background_server_is_ready_before_the_next_line_and_gone_after(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(
        "import pathlib, signal\n"
        "pathlib.Path('up').write_text('1')\n"
        "print('ready', flush=True)\n"
        "signal.pause()\n"
    )
    [first, second] = run(
        tmp_path,
        md(
            f"{FENCE}sh",
            "python server.py &",
            "test -f up",
            "jobs -p > pids",
            FENCE,
            f"{FENCE}sh",
            "test -f up  # files stay for the next block of the page",
            FENCE,
        ),
    )
    assert first.ok, first.detail
    assert second.ok, second.detail
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_foreground_server_is_started_and_stopped_cleanly(tmp_path: Path) -> None:
    [outcome] = run(tmp_path, md(f"{FENCE}sh", "swarm relay --port 0", FENCE))
    assert outcome.ok, outcome.detail
    assert "ws://127.0.0.1:" in outcome.detail  # its ready line is shown


def test_replacements_use_the_world_and_must_match(tmp_path: Path) -> None:
    text = md(
        "<!-- doc-test: replace wss://relay.example => $RELAY -->",
        f"{FENCE}sh",
        "echo wss://relay.example > used",
        FENCE,
        "<!-- doc-test: replace wss://other.example => $RELAY -->",
        f"{FENCE}sh",
        "echo wss://relay.example",
        FENCE,
    )
    first, second = run(tmp_path, text, {"RELAY": "ws://127.0.0.1:9"})
    assert first.ok and (tmp_path / "used").read_text() == "ws://127.0.0.1:9\n"
    assert not second.ok
    assert "matches nothing" in second.detail and "wss://relay.example" in second.detail


def test_python_programs_run_and_fragments_have_their_imports_checked(tmp_path: Path) -> None:
    text = md(
        f"{FENCE}python",
        "from pathlib import Path",
        "Path('ran').write_text('yes')",
        FENCE,
        f"{FENCE}python",
        "from client import Keys",
        "keys = await make_keys()",
        FENCE,
        f"{FENCE}python",
        "from client import NoSuchThing",
        "NoSuchThing(undefined_name)",
        FENCE,
    )
    program, fragment, broken = run(tmp_path, text)
    assert program.ok and program.how == "ran" and (tmp_path / "ran").read_text() == "yes"
    assert fragment.ok and fragment.how.startswith("compiled")
    assert not broken.ok and "NoSuchThing" in broken.detail
