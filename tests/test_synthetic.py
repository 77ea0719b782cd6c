"""The synthetic task: exact step labels (the PRM's ground truth) and the SFT targets of the embedded policy."""

from __future__ import annotations

import dataclasses
import random

import pytest

from grpo_core.config import SyntheticTaskConfig
from grpo_core.data.synthetic import exact_step_labels, generate_splits, make_problem
from grpo_core.policy.bootstrap import sft_solutions
from grpo_core.reward.verify import verify

# 2, then "3 times as many", then "2 times as many", then "gets 5 more": gold 2*3*2+5 = 17
PROBLEM = make_problem("p", 2, [("*", 3), ("*", 2), ("+", 5)], random.Random(0))


@pytest.mark.parametrize(
    ("steps", "labels"),
    [
        (["2 * 3 = 6", "6 * 2 = 12", "12 + 5 = 17", "The answer is 17"], [True, True, True, True]),
        # commuting multiplications keep the gold answer reachable: every step is right
        (["2 * 2 = 4", "4 * 3 = 12", "12 + 5 = 17", "The answer is 17"], [True, True, True, True]),
        # adding first is a true equation but the gold answer is out of reach: (2+5)*3*2 = 42
        (["2 + 5 = 7", "7 * 3 = 21", "21 * 2 = 42", "The answer is 42"], [False] * 4),
        # a false equation stays wrong, and so does everything after it
        (["2 * 3 = 6", "6 * 2 = 11", "11 + 5 = 16", "The answer is 16"], [True, False, False, False]),
        # the right value from the wrong start: the first equation must begin at the start, 2
        (["3 * 2 = 6", "6 * 2 = 12", "12 + 5 = 17", "The answer is 17"], [False] * 4),
        # an operation used twice while another is skipped
        (["2 * 3 = 6", "6 * 3 = 18", "The answer is 18"], [True, False, False]),
        # a direct answer, and one that skips the rest of the working, still state the gold answer
        (["The answer is 17"], [True]),
        (["2 * 3 = 6", "The answer is 17"], [True, True]),
        (["The answer is 16"], [False]),
        # nothing may follow the answer; a line that is neither an equation nor the answer is wrong
        (["2 * 3 = 6", "6 * 2 = 12", "12 + 5 = 17", "The answer is 17", "17 + 0 = 17"], [True] * 4 + [False]),
        (["2 * 3 = 6", "so six", "6 * 2 = 12"], [True, False, False]),
        (["2 * 3 = 6", "6 * 2 = 12", "12 + 5 = 17", "17 * 1 = 17"], [True, True, True, False]),
        ([], []),
    ],
)
def test_exact_step_labels(steps: list[str], labels: list[bool]) -> None:
    assert exact_step_labels(PROBLEM, steps) == labels


@pytest.mark.parametrize("line", ["The answer is 17", "The answer is  17", "The answer is\t17.", "The answer is 16"])
def test_answer_step_label_agrees_with_the_reward(line: str) -> None:
    """The answer step's exact label and the outcome reward read the final line the same way."""
    assert exact_step_labels(PROBLEM, [line]) == [verify(line, PROBLEM.answer, fmt="synthetic").correct]


def test_exact_labels_accept_every_gold_solution() -> None:
    train, test = generate_splits(SyntheticTaskConfig(n_train=300, n_test=50), seed=1)
    for p in train + test:
        steps = p.solution.splitlines()
        assert exact_step_labels(p, steps) == [True] * len(steps), p.solution


def test_exact_labels_need_a_synthetic_problem() -> None:
    real = dataclasses.replace(PROBLEM, start=None, ops=())
    with pytest.raises(ValueError, match="exact step labels need a synthetic problem"):
        exact_step_labels(real, ["1 + 1 = 2"])


def test_sft_solutions_mix_direct_answers_by_the_configured_share() -> None:
    train, _ = generate_splits(SyntheticTaskConfig(n_train=200, n_test=10), seed=0)
    targets = sft_solutions(train, 0.25, seed=3)
    direct = [t for t, p in zip(targets, train) if t != p.solution]
    assert len(direct) == 50
    assert all(t == f"The answer is {p.answer}" for t, p in zip(targets, train) if t != p.solution)
    assert sft_solutions(train, 0.25, seed=3) == targets  # seeded
    assert sft_solutions(train, 0.25, seed=4) != targets
    assert sft_solutions(train, 0.0, seed=3) == [p.solution for p in train]
    assert all(t.startswith("The answer is ") and "\n" not in t for t in sft_solutions(train, 1.0, seed=3))
