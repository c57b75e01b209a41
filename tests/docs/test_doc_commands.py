"""Every command shown in the docs runs (doc examples must not rot).

What is checked, for README.md and every docs/*.md (rules in tests/docs/README.md):

- every ```sh block runs as a bash script (``set -e -o pipefail``), the blocks of one file in order
  in one temporary directory, with ``swarm`` the console script of this interpreter, ``HOME`` and
  ``NOSTR_SWARM_HOME`` temporary, and nothing outside 127.0.0.1: a command that names the outside
  world fails the test unless a visible ``<!-- doc-test: replace ... -->`` directive swaps it for
  the local world (tests/docs/world.py);
- every ```python block compiles; one that is a complete program (no top-level ``await``, no
  undefined name) is run the same way; a fragment has its imports executed;
- ``swarm SUB [ACTION] --help`` exits 0 for every subcommand the docs name;
- commands a reader would type are not hidden in untyped blocks, where nothing would run them;
- the README's two fresh-machine commands are what .ci/run runs (install, tests); the demo part
  of the first is run here;
- relative links point at files that exist, and at headings that exist;
- benchmarks named anywhere in the docs (`python bench/NAME.py --flag ...`; they take minutes,
  so they are not run here) exist, answer ``--help``, and accept every flag the docs give them;
  every ``pytest -m MARK`` names a registered marker.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from client.cli import build_parser, main

from .markdown import (
    Document,
    anchors,
    commands_outside_shell_blocks,
    links,
    parse,
    swarm_mentions,
)
from .session import ROOT, DocSession

DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def load(path: str) -> Document:
    return parse((ROOT / path).read_text(), path)


@pytest.mark.parametrize("path", DOCS)
def test_doc_commands_run(path: str, world: dict[str, str], workdir: Path) -> None:
    doc = load(path)
    with contextlib.ExitStack() as stack:
        text = (ROOT / path).read_text()
        # Pages about shared state get private PostgreSQL and Redis servers.
        if "$POSTGRES" in text or "$REDIS" in text:
            from tests.support.servers import start_postgres, start_redis

            pg = start_postgres()
            stack.callback(pg.stop)
            redis = start_redis()
            stack.callback(redis.kill)
            world = {**world, "POSTGRES": pg.fresh_database(), "REDIS": redis.url}
        outcomes = DocSession(doc, workdir, world).run()
    failures = [f"{o.block.where} ({o.how}): {o.detail}" for o in outcomes if not o.ok]
    problems = doc.errors + failures
    assert not problems, "\n\n".join(problems)


def _actions() -> dict[str, set[str]]:
    """Each subcommand and its actions (empty when it takes none)."""
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out: dict[str, set[str]] = {}
    for name, sub in subs.choices.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        out[name] = set(nested[0].choices) if nested else set()
    return out


def test_every_subcommand_named_in_the_docs_answers_help() -> None:
    actions = _actions()
    named: dict[tuple[str, ...], str] = {}
    for path in DOCS:
        for words in swarm_mentions(load(path)):
            sub = words[0]
            key = words[:2] if len(words) > 1 and actions.get(sub) else (sub,)
            named.setdefault(key, path)
    assert ("ask",) in named and ("provider", "run") in named  # the scan finds commands
    problems = []
    for words, path in sorted(named.items()):
        if words[0] not in actions:
            problems.append(f"{path}: `swarm {words[0]}` is not a swarm subcommand")
            continue
        if len(words) > 1 and words[1] not in actions[words[0]]:
            problems.append(f"{path}: `swarm {' '.join(words)}`: no such action")
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
            main([*words, "--help"])
        if exited.value.code != 0 or "usage: swarm" not in out.getvalue():
            problems.append(f"{path}: `swarm {' '.join(words)} --help` failed")
    assert not problems, "\n".join(problems)


def test_commands_are_in_shell_blocks_where_they_run() -> None:
    hidden = [line for path in DOCS for line in commands_outside_shell_blocks(load(path))]
    assert not hidden, "put these in ```sh blocks (they are run there):\n" + "\n".join(hidden)


def test_readme_starts_with_the_two_fresh_machine_commands() -> None:
    shell = [b.text.strip() for b in load("README.md").blocks if b.is_shell]
    assert shell[:2] == [
        "bash scripts/install.sh && .venv/bin/swarm demo",
        "bash scripts/install.sh && .venv/bin/python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "bash scripts/install.sh" in ci and shell[1] in ci


def test_relative_links_and_anchors_resolve() -> None:
    broken = []
    for path in DOCS:
        here = (ROOT / path).parent
        for target in links(load(path)):
            file, _, anchor = target.partition("#")
            dest = (here / file).resolve() if file else ROOT / path
            if not dest.exists():
                broken.append(f"{path}: {target}: no such file")
            elif (
                anchor
                and dest.suffix == ".md"
                and anchor not in anchors(parse(dest.read_text(), str(dest)))
            ):
                broken.append(f"{path}: {target}: no such heading")
    assert not broken, "\n".join(broken)


# `python bench/x.py --jobs 3000 --inproc`: the script and its options (each with one value).
_BENCH = re.compile(
    r"python3? (bench/[\w-]+\.py)"
    r"((?:[ \t]+--?[\w-]+(?:[ =][^\s`'\"|;&-][^\s`'\"|;&]*)?)*)"
)


def test_benchmarks_and_pytest_markers_named_in_the_docs_exist() -> None:
    texts = {path: (ROOT / path).read_text() for path in DOCS}
    flags: dict[str, set[str]] = {}
    for text in texts.values():
        for script, args in _BENCH.findall(text):
            flags.setdefault(script, set()).update(re.findall(r"(?<!\S)(--?[\w-]+)", args))
    assert "bench/crypto.py" in flags  # the scan finds the README's benchmarks
    procs = {
        script: subprocess.Popen(
            [sys.executable, script, "--help"], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for script in flags if (ROOT / script).exists()
    }  # fmt: skip
    problems = [f"{s}: no such file" for s in flags if s not in procs]
    for script, proc in procs.items():
        out, _ = proc.communicate(timeout=60)
        if proc.returncode != 0:
            problems.append(f"{script} --help exited {proc.returncode}: {out[-300:]}")
        problems += [f"{script}: the docs pass {f}, --help lists no such option"
                     for f in sorted(flags[script]) if f not in out]  # fmt: skip
    markers = {
        m.split(":")[0].strip()
        for m in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
            "ini_options"
        ]["markers"]
    }
    for path, text in texts.items():
        for mark in re.findall(r"pytest -m ([\w]+)", text):
            if mark not in markers:
                problems.append(f"{path}: pytest -m {mark}: no such marker")
    assert not problems, "\n".join(problems)
