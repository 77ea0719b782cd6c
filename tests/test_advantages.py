"""Hand-computed checks of grpo_core.maths.advantages (DeepSeekMath Sec. 4.1.2, 4.1.3)."""

from __future__ import annotations

import math

import pytest
import torch

from grpo_core.maths.advantages import (
    add_outcome_to_last_step,
    outcome_advantages,
    process_advantages,
    soft_overlong_penalty,
)

# ---------------------------------------------------------------- outcome (4.1.2)


def test_outcome_population_std_pins_plus_minus_one():
    # r = [1, 0, 0, 1]: mean 0.5, deviations +-0.5, population var = 4 * 0.25 / 4 = 0.25,
    # std = 0.5 -> A = +-0.5 / 0.5 = +-1. (Bessel std = sqrt(1/3) = 0.577 would give +-0.866.)
    adv, zero_std = outcome_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    torch.testing.assert_close(adv, torch.tensor([[1.0, -1.0, -1.0, 1.0]]))
    assert zero_std.tolist() == [False]
    assert not torch.allclose(adv.abs(), torch.full((1, 4), 0.8660254))


def test_outcome_all_equal_group_is_zero():
    adv, zero_std = outcome_advantages(torch.tensor([[1.0, 1.0, 1.0, 1.0]]))
    assert torch.equal(adv, torch.zeros(1, 4))
    assert zero_std.tolist() == [True]


def test_outcome_all_equal_fractional_rewards_are_zero_despite_rounding():
    # Eight rewards of 0.7: float32 rounding in the mean gives std = 6e-8 > 1e-8; the
    # group must still count as all-equal (range 0), not as +-1 advantages of noise.
    adv, zero_std = outcome_advantages(torch.full((1, 8), 0.7))
    assert torch.equal(adv, torch.zeros(1, 8))
    assert zero_std.tolist() == [True]


def test_outcome_two_groups_mixed():
    # Row 0: [1, 0, 0, 1] -> [+1, -1, -1, +1] (above).
    # Row 1: [2, 0, 0, 0]: mean 0.5, deviations [1.5, -0.5, -0.5, -0.5],
    #   var = (2.25 + 3 * 0.25) / 4 = 0.75, std = sqrt(0.75) = 0.8660
    #   -> [1.5 / 0.866, -0.5 / 0.866 x3] = [sqrt(3), -1/sqrt(3) x3] = [1.7321, -0.5774 x3].
    # Row 2: all zeros -> zeros, zero_std.
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    adv, zero_std = outcome_advantages(rewards)
    s3 = math.sqrt(3.0)
    expected = torch.tensor(
        [[1.0, -1.0, -1.0, 1.0], [s3, -1 / s3, -1 / s3, -1 / s3], [0.0, 0.0, 0.0, 0.0]]
    )
    torch.testing.assert_close(adv, expected)
    assert zero_std.tolist() == [False, False, True]
    # Each non-degenerate group has mean 0 and population std 1.
    torch.testing.assert_close(adv[:2].mean(1), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(adv[:2].std(1, unbiased=False), torch.ones(2))


def test_outcome_accepts_bool_or_int_rewards():
    adv, _ = outcome_advantages(torch.tensor([[True, False, False, True]]))
    torch.testing.assert_close(adv, torch.tensor([[1.0, -1.0, -1.0, 1.0]]))


def test_outcome_rejects_flat_rewards():
    with pytest.raises(ValueError, match=r"\(B, G\)"):
        outcome_advantages(torch.tensor([1.0, 0.0]))


# ---------------------------------------------------------------- process (4.1.3)

NAN = float("nan")
# a = sqrt(2/3) = 0.8165, b = -sqrt(3/2) = -1.2247 (group 0 below)
A_ = math.sqrt(2 / 3)
B_ = -math.sqrt(3 / 2)
# c = 1/sqrt(2) = 0.7071, d = -sqrt(2) = -1.4142 (group 1 below)
C_ = 1 / math.sqrt(2)
D_ = -math.sqrt(2)


def _process_case():
    """Five outputs in three groups, rows interleaved, T = 8, S = 3 (padded).

    Group 0: output P (row 0) steps r = [1, 0],    ends [2, 4]
             output Q (row 2) steps r = [1, 1, 0], ends [1, 3, 5]
      R = {1, 0, 1, 1, 0}: mean 3/5 = 0.6, deviations [0.4, -0.6, 0.4, 0.4, -0.6],
      var = (3 * 0.16 + 2 * 0.36) / 5 = 1.2 / 5 = 0.24, std = sqrt(0.24) = 0.4899
      r~(1) = 0.4 / sqrt(0.24) = sqrt(2/3) = a;  r~(0) = -0.6 / sqrt(0.24) = -sqrt(3/2) = b
      P: t 0..2 -> a + b = -1/sqrt(6) = -0.4082; t 3..4 -> b; t 5..7 -> 0
      Q: t 0..1 -> 2a + b = +1/sqrt(6) = 0.4082; t 2..3 -> a + b; t 4..5 -> b; t 6..7 -> 0
    Group 1: output U (row 1) steps r = [1],    ends [3]
             output V (row 3) steps r = [0, 1], ends [1, 6]
      R = {1, 0, 1}: mean 2/3, deviations [1/3, -2/3, 1/3], var = (1/9 + 4/9 + 1/9) / 3 = 2/9,
      std = sqrt(2)/3 = 0.4714;  r~(1) = (1/3) / (sqrt(2)/3) = 1/sqrt(2) = c;  r~(0) = -sqrt(2) = d
      (jointly with group 0 the numbers would differ: groups are normalised separately)
      U: t 0..3 -> c; t 4..7 -> 0
      V: t 0..1 -> d + c = -0.7071; t 2..6 -> c; t 7 -> 0
    Group 2: output W (row 4) steps r = [0.7, 0.7], ends [0, 2]: all equal -> zeros, zero_std.
    Padded steps carry NaN rewards and out-of-range ends: they must be ignored.
    """
    step_rewards = torch.tensor(
        [
            [1.0, 0.0, NAN],
            [1.0, NAN, NAN],
            [1.0, 1.0, 0.0],
            [0.0, 1.0, NAN],
            [0.7, 0.7, NAN],
        ]
    )
    step_mask = torch.tensor(
        [
            [True, True, False],
            [True, False, False],
            [True, True, True],
            [True, True, False],
            [True, True, False],
        ]
    )
    step_ends = torch.tensor([[2, 4, -1], [3, 99, -1], [1, 3, 5], [1, 6, 99], [0, 2, -1]])
    group_index = torch.tensor([0, 1, 0, 1, 2])
    return step_rewards, step_mask, step_ends, group_index


def test_process_hand_computed_suffix_sums():
    adv, zero_std = process_advantages(*_process_case(), n_tokens=8)
    ab = A_ + B_  # -1/sqrt(6)
    expected = torch.tensor(
        [
            [ab, ab, ab, B_, B_, 0, 0, 0],  # P
            [C_, C_, C_, C_, 0, 0, 0, 0],  # U
            [2 * A_ + B_, 2 * A_ + B_, ab, ab, B_, B_, 0, 0],  # Q
            [D_ + C_, D_ + C_, C_, C_, C_, C_, C_, 0],  # V
            [0, 0, 0, 0, 0, 0, 0, 0],  # W (all-equal group)
        ]
    )
    torch.testing.assert_close(adv, expected)
    assert zero_std.tolist() == [False, False, True]
    # Tokens past each output's last step end are exactly 0.
    assert torch.equal(adv[0, 5:], torch.zeros(3))
    assert torch.equal(adv[2, 6:], torch.zeros(2))
    assert torch.equal(adv[3, 7:], torch.zeros(1))
    assert torch.isfinite(adv).all()


def test_process_matches_a_loop_over_steps_and_tokens():
    # Brute force on a random case, straight from the Sec. 4.1.3 definitions.
    gen = torch.Generator().manual_seed(0)
    N, S, T, n_groups = 12, 5, 20, 3
    step_rewards = torch.rand(N, S, generator=gen)
    n_steps = torch.randint(1, S + 1, (N,), generator=gen)
    step_mask = torch.arange(S)[None, :] < n_steps[:, None]
    step_ends = torch.sort(torch.randint(0, T, (N, S), generator=gen), dim=1).values
    group_index = torch.arange(N) % n_groups
    adv, zero_std = process_advantages(step_rewards, step_mask, step_ends, group_index, T)

    expected = torch.zeros(N, T)
    for g in range(n_groups):
        R = torch.cat([step_rewards[i][step_mask[i]] for i in range(N) if group_index[i] == g])
        mean, std = R.mean(), R.std(unbiased=False)
        for i in range(N):
            if group_index[i] != g:
                continue
            for j in range(int(n_steps[i])):
                r_tilde = (step_rewards[i, j] - mean) / std
                for t in range(T):
                    if step_ends[i, j] >= t:
                        expected[i, t] += r_tilde
    torch.testing.assert_close(adv, expected, atol=1e-5, rtol=1e-5)
    assert not zero_std.any()


def test_process_single_step_outcome_like_equals_outcome_advantages():
    # One step per output ending at the last token: every token gets the outcome advantage.
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 0.0, 0.0, 0.0]])
    T = 5
    adv, zero_std = process_advantages(
        rewards.reshape(8, 1),
        torch.ones(8, 1, dtype=torch.bool),
        torch.full((8, 1), T - 1),
        torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]),
        T,
    )
    out_adv, out_zero = outcome_advantages(rewards)
    torch.testing.assert_close(adv, out_adv.reshape(8, 1).expand(8, T))
    assert torch.equal(zero_std, out_zero)


def test_process_rejects_step_end_past_completion():
    sr, sm, se, gi = _process_case()
    with pytest.raises(ValueError, match="n_tokens"):
        process_advantages(sr, sm, se, gi, n_tokens=6)  # V's last step ends at token 6


def test_outcome_joins_the_last_step_only():
    rewards = torch.tensor([[0.2, 0.4, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    out = add_outcome_to_last_step(rewards, mask, torch.tensor([1.0, 0.0, 1.0]), 2.0)
    assert torch.equal(out, torch.tensor([[0.2, 2.4, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert torch.equal(rewards[0], torch.tensor([0.2, 0.4, 0.0]))  # input untouched
    with pytest.raises(ValueError, match="outcome must be"):
        add_outcome_to_last_step(rewards, mask, torch.tensor([1.0, 0.0]), 2.0)


# ---------------------------------------------------------------- variants: advantage scale, min credit, overlong


def test_outcome_batch_std_and_mean_only_scales():
    # Rewards [[1, 0, 0, 1], [2, 0, 0, 0], [0, 0, 0, 0]]: all 12 have mean 4/12 = 1/3 and population
    # var = (2 * 4/9 + 25/9 + 9 * 1/9) / 12 = (8 + 25 + 9) / 108 = 42/108 = 7/18, std = sqrt(7/18) = 0.6236.
    # Group-centred: row 0 [0.5, -0.5, -0.5, 0.5], row 1 [1.5, -0.5, -0.5, -0.5], row 2 zeros.
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    centred = torch.tensor([[0.5, -0.5, -0.5, 0.5], [1.5, -0.5, -0.5, -0.5], [0.0, 0.0, 0.0, 0.0]])
    batch, zero_b = outcome_advantages(rewards, "batch")
    torch.testing.assert_close(batch, centred / math.sqrt(7 / 18))
    none, zero_n = outcome_advantages(rewards, "none")  # Dr. GRPO: mean-only
    torch.testing.assert_close(none, centred)
    assert zero_b.tolist() == zero_n.tolist() == [False, False, True]
    assert torch.equal(outcome_advantages(torch.full((2, 4), 0.7), "batch")[0], torch.zeros(2, 4))  # no /0
    with pytest.raises(ValueError, match="scale='std' is not one of"):
        outcome_advantages(rewards, "std")


def _two_group_steps():
    """Group 0: A steps [0, 1] ends [1, 3]; B steps [0] ends [2]. Group 1: C [1] ends [0]; D [3] ends [0]. T = 4.

    Group 0: R = {0, 1, 0}, mean 1/3, deviations A [-1/3, 2/3], B [-1/3], std sqrt(2/9).
    Group 1: R = {1, 3}, mean 2, deviations C [-1], D [+1], std 1.
    Batch: {0, 1, 0, 1, 3}, mean 1, var (1 + 0 + 1 + 0 + 4) / 5 = 6/5, std sqrt(1.2).
    """
    step_rewards = torch.tensor([[0.0, 1.0], [0.0, NAN], [1.0, NAN], [3.0, NAN]])
    step_mask = torch.tensor([[True, True], [True, False], [True, False], [True, False]])
    step_ends = torch.tensor([[1, 3], [2, -1], [0, -1], [0, -1]])
    return step_rewards, step_mask, step_ends, torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize(("scale", "s0", "s1"), [
    ("group", math.sqrt(2 / 9), 1.0), ("batch", math.sqrt(1.2), math.sqrt(1.2)), ("none", 1.0, 1.0),
])
def test_process_sum_and_min_credit_by_hand(scale, s0, s1):
    a1, a2, b1 = -1 / 3 / s0, 2 / 3 / s0, -1 / 3 / s0  # A's two steps, B's step, normalised
    c, d = -1 / s1, 1 / s1
    adv_sum, _ = process_advantages(*_two_group_steps(), 4, scale=scale)
    torch.testing.assert_close(adv_sum, torch.tensor([
        [a1 + a2, a1 + a2, a2, a2],  # suffix sums (Sec. 4.1.3)
        [b1, b1, b1, 0.0],
        [c, 0.0, 0.0, 0.0],
        [d, 0.0, 0.0, 0.0],
    ]))
    adv_min, zero_std = process_advantages(*_two_group_steps(), 4, scale=scale, credit="min")
    torch.testing.assert_close(adv_min, torch.tensor([
        [a1, a1, a2, a2],  # PURE: the worst normalised step reward from t on
        [b1, b1, b1, 0.0],
        [c, 0.0, 0.0, 0.0],
        [d, 0.0, 0.0, 0.0],
    ]))
    assert zero_std.tolist() == [False, False]


def test_process_min_credit_matches_a_loop_and_zero_groups_stay_zero():
    gen = torch.Generator().manual_seed(1)
    N, S, T, n_groups = 9, 4, 12, 3
    step_rewards = torch.rand(N, S, generator=gen)
    step_rewards[group_rows := torch.arange(N) % n_groups == 2] = 0.5  # group 2: all equal -> zeros
    n_steps = torch.randint(1, S + 1, (N,), generator=gen)
    step_mask = torch.arange(S)[None, :] < n_steps[:, None]
    step_ends = torch.sort(torch.randperm(T, generator=gen)[:S].repeat(N, 1), dim=1).values  # distinct ends
    group_index = torch.arange(N) % n_groups
    for scale in ("group", "batch", "none"):
        adv, zero_std = process_advantages(step_rewards, step_mask, step_ends, group_index, T, scale=scale,
                                           credit="min")
        all_valid = step_rewards[step_mask]
        expected = torch.zeros(N, T)
        for g in range(n_groups):
            R = torch.cat([step_rewards[i][step_mask[i]] for i in range(N) if group_index[i] == g])
            if float(R.max() - R.min()) <= 1e-8:
                continue
            std = {"group": R.std(unbiased=False), "batch": all_valid.std(unbiased=False), "none": 1.0}[scale]
            for i in (i for i in range(N) if group_index[i] == g):
                for t in range(T):
                    future = [(step_rewards[i, j] - R.mean()) / std for j in range(int(n_steps[i]))
                              if step_ends[i, j] >= t]
                    expected[i, t] = min(future) if future else 0.0
        torch.testing.assert_close(adv, expected, atol=1e-5, rtol=1e-5)
        assert zero_std.tolist() == [False, False, True]
    assert torch.equal(adv[group_rows], torch.zeros(int(group_rows.sum()), T))
    with pytest.raises(ValueError, match="credit='max' is not one of"):
        process_advantages(step_rewards, step_mask, step_ends, group_index, T, credit="max")


def test_soft_overlong_penalty_dapo_eq13_by_hand():
    # L_max = 10, L_cache = 4: free up to 6 tokens, then (6 - |o|) / 4, -1 at the budget and past it; x 0.5.
    lengths = torch.tensor([3, 6, 7, 9, 10, 12])
    torch.testing.assert_close(soft_overlong_penalty(lengths, 10, 4, 0.5),
                               torch.tensor([0.0, 0.0, -0.125, -0.375, -0.5, -0.5]))
    assert torch.equal(soft_overlong_penalty(lengths, 10, 0, 0.5), torch.zeros(6))
    with pytest.raises(ValueError, match="overlong buffer must lie in"):
        soft_overlong_penalty(lengths, 10, 11, 1.0)
