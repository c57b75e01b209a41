"""The page's files: the vendored chart library is the one its README names (by hash), and the
page loads nothing from another site (it works offline)."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

from router.dashboard.web import STATIC_FILES

STATIC = resources.files("router.dashboard") / "static"


def test_vendored_files_match_the_hashes_in_their_readme() -> None:
    readme = (STATIC / "vendor" / "README.md").read_text()
    listed = dict(re.findall(r"\| `([^`]+)` \| `[^`]+` \| `([0-9a-f]{64})` \|", readme))
    assert set(listed) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE.uPlot.txt"}
    for name, digest in listed.items():
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == digest, name
    assert "npm pack uplot@1.6.32" in readme
    assert (
        "/*! https://github.com/leeoniya/uPlot (v1.6.32) */"
        in (STATIC / "vendor" / "uPlot.iife.min.js").read_text()
    )


def test_the_page_loads_only_its_own_files() -> None:
    for name in ("index.html", "dashboard.css", "dashboard.js"):
        text = (STATIC / name).read_text()
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), name
        assert not re.search(r"""(fetch|EventSource|url)\(\s*["'`](https?:)?//""", text), name
    page = (STATIC / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="(static/[^"]+)"', page):
        assert ref.removeprefix("static/") in STATIC_FILES, ref
    assert "<script>" not in page and "style=" not in page  # the CSP allows no inline code
