"""Which problems a step draws, and the seed of every draw.

Seeds are functions of (seed, iteration, index) alone, so a resumed run or a
rerun stage draws exactly what the uninterrupted run would have, whatever ran
before it in the process.
"""

from __future__ import annotations

import random

from grpo_core.data.problem import Problem


def derive_seed(seed: int, iteration: int, index: int) -> int:
    """A seed for draw `index` of `iteration` (a GRPO step, a labelling stage), independent of history."""
    return (seed * 1_000_003 + iteration * 10_007 + index) % (2**31)


def sample_questions(train: list[Problem], b: int, seed: int) -> list[Problem]:
    """B distinct questions for one step (with replacement across steps)."""
    return random.Random(seed).sample(train, min(b, len(train)))
