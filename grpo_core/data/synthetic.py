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

NAMES = ("Ann", "Ben", "Cara", "Dan", "Eve", "Finn", "Gus", "Hana", "Ivy", "Jon")
ITEMS = ("apples", "coins", "books", "shells", "stamps", "marbles", "cards", "pens")
ANSWER_PREFIX = "The answer is "

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_PHRASES = {
    "+": "Then {name} gets {n} more.",
    "-": "Then {name} gives away {n}.",
    "*": "Then {name} ends up with {n} times as many.",
}
_STEP_RE = re.compile(r"^\s*(-?\d+)\s*([+\-*])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")
_ANSWER_RE = re.compile(r"^\s*" + re.escape(ANSWER_PREFIX) + r"(-?\d+)\s*\.?\s*$")


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


def exact_step_labels(problem: Problem, steps: list[str]) -> list[bool]:
    """Exact process labels of a completion's steps (Math-Shepherd semantics).

    Label j is True iff steps 0..j are all correct, i.e. the gold answer is
    still reachable from the prefix ending at step j. An equation step is
    correct iff it is "prev op n = result" with the gold previous value, the
    problem's j-th operator and operand, and the right result; the answer step
    is correct iff it follows all equations and states the gold answer.
    """
    if problem.start is None:
        raise ValueError(f"{problem.problem_id}: exact step labels need a synthetic problem")
    labels: list[bool] = []
    ok = True
    value = problem.start
    for j, text in enumerate(steps):
        if ok:
            if j < len(problem.ops):
                op, n = problem.ops[j]
                m = _STEP_RE.match(text)
                new = _OPS[op](value, n)
                ok = bool(m) and (int(m[1]), m[2], int(m[3]), int(m[4])) == (value, op, n, new)
                value = new
            elif j == len(problem.ops):
                m = _ANSWER_RE.match(text)
                ok = bool(m) and int(m[1]) == value
            else:
                ok = False
        labels.append(ok)
    return labels
