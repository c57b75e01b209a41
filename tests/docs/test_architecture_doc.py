"""docs/architecture.md matches the tree: its folder diagram names every package and subpackage,
and every file or folder it names in backticks exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()
PACKAGES = ("client", "router", "provider", "relay_mock")


def tree_block() -> str:
    section = DOC.split("## The tree", 1)[1]
    return section.split("```", 2)[1]


def packages_on_disk() -> set[str]:
    found = set()
    for top in PACKAGES:
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(init.parent.relative_to(ROOT).as_posix())
    return found


def packages_in_diagram() -> set[str]:
    """The diagram's folders, each line's indentation saying whose subfolder it is."""
    found: set[str] = set()
    parents: list[tuple[int, str]] = []
    for line in tree_block().splitlines():
        m = re.match(r"^( *)([a-z_]+)/\s", line + " ")
        if not m:
            continue
        depth, name = len(m.group(1)), m.group(2)
        parents = [(d, p) for d, p in parents if d < depth]
        path = "/".join([p for _, p in parents] + [name])
        found.add(path)
        parents.append((depth, name))
    return found


def test_the_diagram_names_every_package_and_nothing_else() -> None:
    assert packages_in_diagram() == packages_on_disk()


def test_every_path_the_page_names_exists() -> None:
    named = set(re.findall(r"`((?:client|router|provider|relay_mock)/[\w/.]*)`", DOC))
    assert named, "the page names no paths"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == []
