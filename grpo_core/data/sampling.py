"""Which problems a step draws, and the seed of every draw.

Seeds are functions of (seed, iteration, index) alone, so a resumed run or a
rerun stage draws exactly what the uninterrupted run would have, whatever ran
before it in the process. DAPO's dynamic sampling (grpo.dynamic_sampling) draws
more than once per step: draw d of a step has the seed `draw_seed(seed, iteration,
step, d)`, draw 0 the step's own seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Collection

from grpo_core.data.problem import Problem


def derive_seed(seed: int, iteration: int, index: int) -> int:
    """A seed for draw `index` of `iteration` (a GRPO step, a labelling stage), independent of history."""
    return (seed * 1_000_003 + iteration * 10_007 + index) % (2**31)


def draw_seed(seed: int, iteration: int, step: int, draw: int) -> int:
    """The seed of draw `draw` of a GRPO step: draw 0 is `derive_seed(seed, iteration, step)`, later
    draws a hash of all four numbers (distinct streams, the same on every rerun)."""
    if draw == 0:
        return derive_seed(seed, iteration, step)
    digest = hashlib.blake2b(f"{seed}/{iteration}/{step}/{draw}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (2**31)


def sample_questions(train: list[Problem], b: int, seed: int, exclude: Collection[str] = ()) -> list[Problem]:
    """B distinct questions for one step (with replacement across steps), none of whose problem_id is in
    `exclude` (the questions an earlier draw of the same step took)."""
    pool = [p for p in train if p.problem_id not in exclude] if exclude else train
    return random.Random(seed).sample(pool, min(b, len(pool)))


def pick_groups(has_signal: list[list[bool]], b: int, dynamic: bool) -> list[tuple[int, int]]:
    """The (draw, group) pairs a step trains on, in draw order, from each draw's groups' `has_signal`.

    Without dynamic sampling: every group of draw 0. With it (DAPO, arXiv 2503.14476): the first b groups
    whose rewards differ; when the draws ran out before b such groups, topped up to b with the earliest
    groups without signal (the step keeps B groups, so the learning-rate schedule's update count holds).
    """
    if not dynamic:
        return [(0, j) for j in range(len(has_signal[0]))] if has_signal else []
    groups = [(d, j) for d, draw in enumerate(has_signal) for j in range(len(draw))]
    signal = [dj for dj in groups if has_signal[dj[0]][dj[1]]][:b]
    flat = [dj for dj in groups if not has_signal[dj[0]][dj[1]]][: b - len(signal)]
    return sorted(signal + flat)
