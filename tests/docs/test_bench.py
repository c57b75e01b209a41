"""Every benchmark in bench/ still starts after an API change: each script answers ``--help`` (its
module-level imports run and its argument parser is built), and every name it imports from this
project, at the top or inside a function (the benchmarks import their heavy parts late), exists.

Running the benchmarks themselves is not a test: they take minutes and measure, not check.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "bench").glob("*.py"))
FIRST_PARTY = frozenset({"client", "router", "provider", "relay_mock", "tests"})


def test_there_are_benchmarks_to_check() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"router.py", "gateway.py", "provider.py", "swarm.py", "soak.py"} <= names


def test_every_bench_script_answers_help() -> None:
    procs = {
        script.name: subprocess.Popen(
            [sys.executable, str(script), "--help"],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for script in SCRIPTS
    }
    problems = []
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0 or "usage:" not in out:
            problems.append(f"bench/{name} --help exited {proc.returncode}: {out[-600:]}")
    assert not problems, "\n\n".join(problems)


def _project_imports(script: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) for each import of this project's code in ``script``; ``name`` is
    None for ``import module``."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(script.read_text(), str(script))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module, a.name) for a in node.names]
    return [f for f in found if f[1].split(".")[0] in FIRST_PARTY]


def test_every_project_name_a_bench_script_imports_exists() -> None:
    problems = []
    checked = 0
    for script in SCRIPTS:
        for line, module, name in _project_imports(script):
            where = f"bench/{script.name}:{line}"
            try:
                mod = importlib.import_module(module)
            except ImportError as exc:
                problems.append(f"{where}: import {module}: {exc}")
                continue
            checked += 1
            if name is None or hasattr(mod, name):
                continue
            try:  # `from package import submodule`
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                problems.append(f"{where}: {module} has no {name!r}")
    assert checked > 20  # the scan finds the benchmarks' imports
    assert not problems, "\n".join(problems)
