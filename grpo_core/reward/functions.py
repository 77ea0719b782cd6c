"""Outcome rewards: the rule verifier, user reward functions, weighted sums.

A reward function takes the step's completions and their problems and returns
one float per completion:

    def my_reward(completions: list[str], problems: list[Problem]) -> Sequence[float]

Name it in the config as `reward.functions: {"my_pkg.rewards:my_reward": 0.5}`
beside the built-ins (`correct`: 1 if the final answer verifies, else 0;
`format`: 1 if a final answer could be extracted). The total reward is the
weighted sum. A function that raises, returns NaN/inf or the wrong number of
values fails the step with a `RewardError` naming the function and a problem id,
before anything of that step is stored.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import numpy as np

from grpo_core.data.problem import Problem
from grpo_core.reward.verify import AnswerFormat, Verdict, verify

RewardFn = Callable[[list[str], list[Problem]], Sequence[float]]

ANSWER_FORMATS: dict[str, AnswerFormat] = {"synthetic": "synthetic", "gsm8k": "gsm8k", "math": "boxed"}


class RewardError(RuntimeError):
    """A reward function misbehaved; the message names it and a problem id."""


def verdicts_for(completions: list[str], problems: list[Problem]) -> list[Verdict]:
    """Verify each completion against its problem's gold answer."""
    return [
        verify(c, p.answer, fmt=ANSWER_FORMATS.get(p.source, "auto"))
        for c, p in zip(completions, problems, strict=True)
    ]


def resolve(name: str) -> RewardFn:
    """A user reward function from "package.module:function"."""
    module_name, _, attr = name.partition(":")
    if not attr:
        raise RewardError(
            f"reward function {name!r}: expected a built-in ('correct', 'format') or 'package.module:function'"
        )
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise RewardError(f"reward function {name!r} cannot be imported: {err}") from err
    if not callable(fn):
        raise RewardError(f"reward function {name!r} is not callable")
    return fn


def _checked(name: str, values: object, problems: list[Problem]) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise RewardError(
            f"reward function {name!r} returned non-numeric values for problem {problems[0].problem_id}: {err}"
        ) from err
    if arr.shape[0] != len(problems):
        raise RewardError(
            f"reward function {name!r} returned {arr.shape[0]} values for {len(problems)} completions "
            f"(first problem {problems[0].problem_id}); it must return one float per completion"
        )
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise RewardError(
            f"reward function {name!r} returned {arr[bad[0]]} (not finite) for problem "
            f"{problems[bad[0]].problem_id}, completion {bad[0]}"
        )
    return arr


def compute_rewards(
    functions: dict[str, float], completions: list[str], problems: list[Problem], verdicts: list[Verdict]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted sum of reward functions -> ((N,) total, {name: (N,) values})."""
    parts: dict[str, np.ndarray] = {}
    for name, weight in functions.items():
        if name == "correct":
            values: object = [float(v.correct) for v in verdicts]
        elif name == "format":
            values = [float(v.answer is not None) for v in verdicts]
        else:
            fn = resolve(name)
            try:
                values = fn(list(completions), list(problems))
            except Exception as err:  # a user function may raise anything; name it
                raise RewardError(
                    f"reward function {name!r} raised {type(err).__name__}: {err} "
                    f"(step's first problem {problems[0].problem_id})"
                ) from err
        parts[name] = _checked(name, values, problems)
    total = sum((w * parts[n] for n, w in functions.items()), np.zeros(len(problems)))
    return total, parts
