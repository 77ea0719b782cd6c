"""Training helpers: ROC AUC by ranks vs a brute-force pair count, replay counts, hold-out split."""

from __future__ import annotations

import math
import random

import pytest

from prm.data import LabelledSolution
from prm.pipeline import split_holdout
from prm.train import masked_bce, mix_replay, replay_count, roc_auc


def brute_auc(scores, labels):
    """P(score of a random positive > score of a random negative), ties count one half."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_hand_cases():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([1, 2, 3], [0, 1, 1]) == 1.0
    assert roc_auc([3, 2, 1], [0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5  # all tied
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_brute_force_with_ties(seed):
    rng = random.Random(seed)
    n = rng.randint(5, 60)
    scores = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) + (rng.random() if seed % 2 else 0.0) for _ in range(n)]
    labels = [rng.random() < 0.4 for _ in range(n)]
    labels[0], labels[1] = True, False
    assert roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels), abs=1e-12)


def test_replay_counts_are_exact_and_seeded():
    new, old = list(range(7)), [f"old{i}" for i in range(23)]
    mixed = mix_replay(new, old, 0.1, seed=0)
    assert mixed[:7] == new and len(mixed) == 7 + 2  # round(0.1 * 23) = 2
    assert set(mixed[7:]) <= set(old) and len(set(mixed[7:])) == 2  # no duplicates
    assert mix_replay(new, old, 0.1, seed=0) == mixed
    draws = {tuple(mix_replay(new, old, 0.1, seed=s)[7:]) for s in range(20)}
    assert len(draws) > 5  # the seed changes the draw
    assert mix_replay(new, old, 0.0, seed=0) == new
    assert mix_replay(new, old, 1.0, seed=0) == new + old
    assert mix_replay(new, [], 0.1, seed=0) == new
    assert [replay_count(n, 0.1) for n in (0, 4, 5, 14, 15, 100, 1000)] == [0, 0, 1, 1, 2, 10, 100]  # half rounds up
    with pytest.raises(ValueError, match="replay fraction"):
        replay_count(10, 1.5)


def test_holdout_split_is_by_problem():
    sols = [LabelledSolution((None, None, f"p{i % 10}", i), f"p{i % 10}", "q", ["a"], [True], [1.0], [None])
            for i in range(30)]
    train, held = split_holdout(sols, 0.2, seed=1)
    assert len({s.problem_id for s in held}) == 2 and len(held) == 6 and len(train) == 24
    assert not {s.problem_id for s in held} & {s.problem_id for s in train}
    assert split_holdout(sols, 0.0, seed=1) == (sols, [])


def test_masked_bce_ignores_padding():
    import torch

    logits = torch.tensor([[0.0, 100.0], [0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    mask = torch.tensor([[True, False], [True, False]])
    assert float(masked_bce(logits, targets, mask)) == pytest.approx(math.log(2))
