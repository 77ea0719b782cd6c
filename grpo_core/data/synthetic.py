"""The built-in task: seeded multi-step arithmetic word problems.

Each problem starts from a quantity and applies `min_steps..max_steps`
operations (add, subtract, multiply); the gold solution writes one equation a
line and ends with "The answer is N". Every step is machine-checkable, so the
exact process label of any step of any completion is known
(`exact_step_labels`), which makes PRM label quality measurable.

Train and test splits are disjoint by question text: the test split is drawn
first and any train draw that repeats a test question is redrawn.
"""

from __future__ import annotations

import random
import re

from grpo_core.config import SyntheticTaskConfig
from grpo_core.data.problem import Problem
from grpo_core.reward.answer import ANSWER_PREFIX, answer_line

NAMES = ("Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana", "Ivy", "Jon")
ITEMS = ("apples", "coins", "books", "shells", "stamps", "marbles", "cards", "pens")

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_PHRASES = {
    "+": "Then {name} gets {n} more.",
    "-": "Then {name} gives away {n}.",
    "*": "Then {name} ends up with {n} times as many.",
}
_STEP_RE = re.compile(r"^\s*(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")


def _draw(rng: random.Random, cfg: SyntheticTaskConfig) -> tuple[int, list[tuple[str, int]]]:
    value = rng.randint(1, cfg.max_number)
    start = value
    ops: list[tuple[str, int]] = []
    for _ in range(rng.randint(cfg.min_steps, cfg.max_steps)):
        choices = ["+", "*"] + (["-"] if value > 1 else [])
        op = rng.choice(choices)
        if op == "*":
            n = rng.randint(2, 3)
        elif op == "-":
            n = rng.randint(1, min(value - 1, cfg.max_number))
        else:
            n = rng.randint(1, cfg.max_number)
        value = _OPS[op](value, n)
        ops.append((op, n))
    return start, ops


def make_problem(problem_id: str, start: int, ops: list[tuple[str, int]], rng: random.Random) -> Problem:
    """Render a problem (question text and gold solution) from its operations."""
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    sentences = [f"{name} has {start} {items}."]
    lines = []
    value = start
    for op, n in ops:
        sentences.append(_PHRASES[op].format(name=name, n=n))
        new = _OPS[op](value, n)
        lines.append(f"{value} {op} {n} = {new}")
        value = new
    sentences.append(f"How many {items} does {name} have now?")
    lines.append(f"{ANSWER_PREFIX}{value}")
    return Problem(
        problem_id=problem_id,
        question=" ".join(sentences),
        answer=str(value),
        solution="\n".join(lines),
        source="synthetic",
        start=start,
        ops=tuple(ops),
    )


def generate_splits(cfg: SyntheticTaskConfig, seed: int) -> tuple[list[Problem], list[Problem]]:
    """Return (train, test): deterministic for (cfg, seed), disjoint by question."""
    rng = random.Random(seed)
    test: list[Problem] = []
    seen: set[str] = set()

    def draw_unique(split: str, count: int, out: list[Problem]) -> None:
        attempts = 0
        while len(out) < count:
            attempts += 1
            if attempts > 50 * count + 1000:
                raise ValueError(
                    f"synthetic task: cannot draw {count} distinct {split} problems with "
                    f"max_number={cfg.max_number}, steps={cfg.min_steps}..{cfg.max_steps}; "
                    "raise task.synthetic.max_number or max_steps, or lower n_train/n_test"
                )
            start, ops = _draw(rng, cfg)
            p = make_problem(f"syn-{split}-{len(out)}", start, ops, rng)
            if p.question in seen:
                continue
            seen.add(p.question)
            out.append(p)

    draw_unique("test", cfg.n_test, test)
    train: list[Problem] = []
    draw_unique("train", cfg.n_train, train)
    return train, test


def _reachable(value: int, remaining: tuple[tuple[str, int], ...], gold: int) -> bool:
    """Whether applying `remaining` in some order to `value` gives `gold`."""
    if not remaining:
        return value == gold
    return any(
        _reachable(_OPS[op](value, n), remaining[:i] + remaining[i + 1 :], gold)
        for i, (op, n) in enumerate(remaining)
    )


def exact_step_labels(problem: Problem, steps: list[str]) -> list[bool]:
    """Exact process labels of a completion's steps (Math-Shepherd semantics).

    Label j is True iff steps 0..j are all correct and the gold answer is still
    reachable from the prefix ending at step j, i.e. what Math-Shepherd's
    estimate would give with a perfect completer. An equation step is correct
    iff it reads "prev op n = result" with prev the previous step's result (the
    start for the first), (op, n) one of the problem's operations not used yet,
    a true result, and some order of the unused operations still leading to
    the gold answer; so operations that commute may come in any order
    ("2 * 2 = 4", "4 * 3 = 12" for "3 times as many, then 2 times as many"),
    while a false equation is wrong even when its result happens to be right.
    The answer step is a line that `grpo_core.reward.answer.answer_line` reads
    as "The answer is N", the reading the outcome reward uses too; it is correct
    iff it states the gold answer: after all the operations, or before (a
    direct answer, or one that skips the rest of the working, still reaches the
    answer). Anything after the answer is wrong.
    """
    if problem.start is None:
        raise ValueError(f"{problem.problem_id}: exact step labels need a synthetic problem")
    gold = int(problem.answer)
    labels: list[bool] = []
    ok, done = True, False
    value, remaining = problem.start, tuple(problem.ops)
    for text in steps:
        if not ok or done:
            ok = False
        elif (answer := answer_line(text)) is not None:
            ok, done = int(answer) == gold, True
        elif remaining:
            m = _STEP_RE.match(text)
            ok = False
            if m and int(m[1]) == value and (m[2], int(m[3])) in remaining:
                op, n = m[2], int(m[3])
                i = remaining.index((op, n))
                new, rest = _OPS[op](value, n), remaining[:i] + remaining[i + 1 :]
                ok = int(m[4]) == new and _reachable(new, rest, gold)
                value, remaining = new, rest
        else:
            ok = False
        labels.append(ok)
    return labels
