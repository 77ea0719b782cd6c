"""Hand-computed checks of grpo_core.maths.loss (DeepSeekMath Eq. 3, Eq. 4, App. A.1.6)."""

from __future__ import annotations

import math

import pytest
import torch

from grpo_core.maths.loss import aggregate, loss_metrics, per_token_loss

# Two outputs of five tokens with ratios rho = pi_theta / pi_old chosen directly.
RHO = torch.tensor([0.5, 0.95, 1.0, 1.05, 1.5])
OLD = torch.full((2, 5), math.log(0.5))  # pi_old = 0.5 everywhere
LOGP = OLD + torch.log(RHO).expand(2, 5)  # (2, 5) pi_theta = 0.5 * rho
ADV = torch.tensor([1.0, -2.0])  # (N,) output 0 good (A = +1), output 1 bad (A = -2)


def _loss(eps, eps_high=None, **kw):
    return per_token_loss(LOGP, OLD, None, ADV, beta=0.0, epsilon=eps, epsilon_high=eps_high, **kw)


def test_clip_inactive_with_wide_epsilon():
    # eps = 10: clip range [-9, 11] holds every rho, so loss = -rho * A.
    # A = +1: -[0.5, 0.95, 1, 1.05, 1.5];  A = -2: +2 * rho = [1, 1.9, 2, 2.1, 3].
    loss, stats = _loss(10.0)
    expected = torch.tensor([[-0.5, -0.95, -1.0, -1.05, -1.5], [1.0, 1.9, 2.0, 2.1, 3.0]])
    torch.testing.assert_close(loss, expected)
    assert not stats["clipped"].any()
    torch.testing.assert_close(stats["ratio"], RHO.expand(2, 5))


def test_clip_active_symmetric():
    # eps = 0.1: clip(rho) = [0.9, 0.95, 1, 1.05, 1.1].
    # A = +1: min(rho, clip) = [0.5, 0.95, 1, 1.05, 1.1] -> loss = -that; the 1.5 token is
    #   clipped (no reward for moving further up), the 0.5 token is not (pessimistic bound).
    # A = -2: min(-2 rho, -2 clip) = min([-1, -1.9, -2, -2.1, -3], [-1.8, -1.9, -2, -2.1, -2.2])
    #   = [-1.8, -1.9, -2, -2.1, -3] -> loss [1.8, 1.9, 2, 2.1, 3]; the 0.5 token is clipped.
    loss, stats = _loss(0.1)
    expected = torch.tensor([[-0.5, -0.95, -1.0, -1.05, -1.1], [1.8, 1.9, 2.0, 2.1, 3.0]])
    torch.testing.assert_close(loss, expected)
    assert stats["clipped"].tolist() == [
        [False, False, False, False, True],
        [True, False, False, False, False],
    ]


def test_epsilon_high_asymmetric_clip():
    # eps = 0.1, eps_high = 0.3: range [0.9, 1.3]. A = +1: the 1.5 token is capped at 1.3.
    # A = -2: lower bound unchanged, 0.5 -> 0.9 -> loss 1.8 as in the symmetric case.
    loss, stats = _loss(0.1, 0.3)
    expected = torch.tensor([[-0.5, -0.95, -1.0, -1.05, -1.3], [1.8, 1.9, 2.0, 2.1, 3.0]])
    torch.testing.assert_close(loss, expected)
    assert stats["clipped"][0].tolist() == [False, False, False, False, True]
    # eps_high = 0.6: range [0.9, 1.6] holds 1.5, so that token is back to -1.5, unclipped.
    loss, stats = _loss(0.1, 0.6)
    assert loss[0, 4].item() == pytest.approx(-1.5)
    assert not stats["clipped"][0].any()
    assert stats["clipped"][1, 0]


def test_advantages_per_token_equal_broadcast():
    loss_n, _ = _loss(0.1)
    loss_nt, _ = per_token_loss(LOGP, OLD, None, ADV[:, None].expand(2, 5), beta=0.0, epsilon=0.1)
    torch.testing.assert_close(loss_n, loss_nt)


def test_k3_kl_values_and_nonnegative():
    # KL = pi_ref/pi - log(pi_ref/pi) - 1 (Eq. 4) with pi = 0.5:
    #   pi_ref = 0.25: 0.5 - ln 0.5 - 1 = 0.5 + 0.693147 - 1 = 0.193147
    #   pi_ref = 0.5 : 1 - 0 - 1 = 0
    #   pi_ref = 1.0 : 2 - ln 2 - 1 = 2 - 0.693147 - 1 = 0.306853
    logp = torch.full((1, 3), math.log(0.5))
    ref = torch.log(torch.tensor([[0.25, 0.5, 1.0]]))
    adv = torch.zeros(1)
    loss, stats = per_token_loss(logp, logp, ref, adv, beta=0.04, epsilon=0.2)
    kl = torch.tensor([[0.5 + math.log(2) - 1, 0.0, 1 - math.log(2)]])
    torch.testing.assert_close(stats["kl"], kl)
    # A = 0: the surrogate is 0, so loss = +beta * KL (we minimise -(0 - beta KL)).
    torch.testing.assert_close(loss, 0.04 * kl)
    # Non-negative for any pair of log-probs.
    gen = torch.Generator().manual_seed(0)
    lp = -torch.rand(64, 32, generator=gen) * 8
    rp = -torch.rand(64, 32, generator=gen) * 8
    _, stats = per_token_loss(lp, lp, rp, torch.zeros(64), beta=0.04, epsilon=0.2)
    assert (stats["kl"] >= 0).all()


def test_kl_term_adds_beta_times_kl():
    ref = OLD + 0.3  # arbitrary reference
    base, _ = _loss(0.1)
    with_kl, stats = per_token_loss(LOGP, OLD, ref, ADV, beta=0.04, epsilon=0.1)
    torch.testing.assert_close(with_kl, base + 0.04 * stats["kl"])


def test_beta_zero_and_ref_none_agree():
    ref = OLD - 0.7
    a, sa = per_token_loss(LOGP, OLD, ref, ADV, beta=0.0, epsilon=0.2)
    b, sb = per_token_loss(LOGP, OLD, None, ADV, beta=0.04, epsilon=0.2)
    c, _ = per_token_loss(LOGP, OLD, None, ADV, beta=0.0, epsilon=0.2)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    assert torch.equal(sb["kl"], torch.zeros(2, 5))  # no reference, KL stat is 0
    assert (sa["kl"] > 0).all()  # with a reference the KL is still reported for logging


def test_gradient_coefficient_app_a16():
    # pi_old = pi_theta (old_logp = logp.detach()), so rho = 1 and, per token,
    # d loss / d logp_t = -(A_t + beta * (pi_ref / pi_theta - 1))   (App. A.1.6):
    # d(-rho A)/d logp = -rho A = -A;  d(beta * (e^d - d - 1))/d logp with d = ref - logp
    # = beta * (-e^d + 1) = -beta * (pi_ref / pi_theta - 1).
    gen = torch.Generator().manual_seed(1)
    N, T, beta = 3, 7, 0.04
    logp = (-torch.rand(N, T, generator=gen, dtype=torch.float64) * 4).requires_grad_()
    ref = -torch.rand(N, T, generator=gen, dtype=torch.float64) * 4
    adv = torch.randn(N, T, generator=gen, dtype=torch.float64)
    loss, _ = per_token_loss(logp, logp.detach(), ref, adv, beta=beta, epsilon=0.2)
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    coef = adv + beta * (torch.exp(ref) / torch.exp(logp.detach()) - 1)
    torch.testing.assert_close(grad, -coef)


def test_clipped_token_gets_no_surrogate_gradient():
    # rho = 1.5 > 1 + eps with A = +1: the clipped branch (constant 1.2) is the min -> grad 0.
    # rho = 1.1 inside [0.8, 1.2]: grad of -rho A w.r.t. logp is -rho A = -1.1.
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_()
    loss, stats = per_token_loss(logp, old, None, torch.ones(1), beta=0.0, epsilon=0.2)
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    torch.testing.assert_close(grad, torch.tensor([[0.0, -1.1]]))
    assert stats["clipped"].tolist() == [[True, False]]


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        per_token_loss(LOGP, OLD[:, :3], None, ADV, beta=0.0, epsilon=0.2)


# ---------------------------------------------------------------- aggregate

# Ragged batch: row 0 has 3 tokens, row 1 has 1, row 2 is empty (NaN in its padding).
PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, float("nan"), 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)


def test_aggregate_seq_mean_token_mean():
    # Row means: (1 + 2 + 3) / 3 = 2, 5 / 1 = 5, empty -> 0; mean over N = 3: 7/3 = 2.3333.
    out = aggregate(PER_TOKEN, MASK, "seq_mean_token_mean")
    assert out.item() == pytest.approx(7 / 3)


def test_aggregate_token_mean():
    # (1 + 2 + 3 + 5) / 4 tokens = 11 / 4 = 2.75
    assert aggregate(PER_TOKEN, MASK, "token_mean").item() == pytest.approx(2.75)
    assert aggregate(PER_TOKEN, MASK.float(), "token_mean").item() == pytest.approx(2.75)


def test_aggregate_dr_grpo():
    # 11 / (N * max_len) = 11 / (3 * 4) = 0.916667; with max_len = 10: 11 / 30.
    assert aggregate(PER_TOKEN, MASK, "dr_grpo", max_len=4).item() == pytest.approx(11 / 12)
    assert aggregate(PER_TOKEN, MASK, "dr_grpo", max_len=10).item() == pytest.approx(11 / 30)
    with pytest.raises(ValueError, match="max_len"):
        aggregate(PER_TOKEN, MASK, "dr_grpo")


def test_aggregate_gradient_weights():
    # seq_mean_token_mean weights each token by 1 / (N |o_i|): row 0 -> 1/9, row 1 -> 1/3,
    # padding and the empty row -> 0 (finite despite the NaN in the padding).
    x = PER_TOKEN.clone().requires_grad_()
    (grad,) = torch.autograd.grad(aggregate(x, MASK, "seq_mean_token_mean"), x)
    expected = torch.tensor([[1 / 9, 1 / 9, 1 / 9, 0], [1 / 3, 0, 0, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("mode", ["seq_mean_token_mean", "token_mean", "dr_grpo"])
def test_aggregate_all_empty_is_zero_not_nan(mode):
    out = aggregate(PER_TOKEN, torch.zeros_like(MASK), mode, max_len=4)
    assert out.item() == 0.0


def test_aggregate_unknown_mode():
    with pytest.raises(ValueError, match="unknown"):
        aggregate(PER_TOKEN, MASK, "sequence_sum")  # type: ignore[arg-type]


# ---------------------------------------------------------------- metrics


def test_loss_metrics_masked_means():
    # Tokens kept: (0,0), (0,1), (0,2), (1,0); the 9s and 100 are padding.
    # kl: (0.1 + 0.2 + 0.3 + 0.4) / 4 = 0.25;  clip_frac: 2 clipped of 4 = 0.5
    # ratio: min 0.8, max 1.3, mean (0.8 + 1.0 + 1.3 + 0.9) / 4 = 1.0
    stats = {
        "kl": torch.tensor([[0.1, 0.2, 0.3, 9.0], [0.4, 9.0, 9.0, 9.0]]),
        "ratio": torch.tensor([[0.8, 1.0, 1.3, 100.0], [0.9, 100.0, 100.0, 100.0]]),
        "clipped": torch.tensor([[False, False, True, True], [True, False, False, False]]),
    }
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    m = loss_metrics(stats, mask)
    assert m == pytest.approx(
        {"kl": 0.25, "clip_frac": 0.5, "ratio_min": 0.8, "ratio_max": 1.3, "ratio_mean": 1.0}
    )
    assert all(type(v) is float for v in m.values())


def test_loss_metrics_from_per_token_loss():
    # Clip case above (eps = 0.1), all 10 tokens kept: 2 clipped -> clip_frac 0.2;
    # ratio min 0.5, max 1.5, mean (0.5 + 0.95 + 1 + 1.05 + 1.5) / 5 = 1.0; no reference -> kl 0.
    _, stats = _loss(0.1)
    m = loss_metrics(stats, torch.ones(2, 5))
    assert m == pytest.approx(
        {"kl": 0.0, "clip_frac": 0.2, "ratio_min": 0.5, "ratio_max": 1.5, "ratio_mean": 1.0}
    )


def test_loss_metrics_empty_mask_is_nan():
    _, stats = _loss(0.1)
    m = loss_metrics(stats, torch.zeros(2, 5))
    assert all(math.isnan(v) for v in m.values())


# ---------------------------------------------------------------- GSPO sequence ratio, rows left out


def test_sequence_ratio_gspo_by_hand_with_gradient():
    # Row 0: log-ratios [0.1, -0.3, 0.5], mean 0.1 -> s_0 = e^0.1 = 1.10517 (inside [0.8, 1.2]), A = +1.
    # Row 1: log-ratios [0.6, 0.3, pad], mean 0.45 -> s_1 = e^0.45 = 1.56831 > 1.2, A = +1: clipped to 1.2,
    # no gradient. seq_mean_token_mean of a per-sequence term is mean_i of it: -(1.10517 + 1.2) / 2.
    old = torch.zeros(2, 3)
    logp = torch.tensor([[0.1, -0.3, 0.5], [0.6, 0.3, float("nan")]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    per_tok, stats = per_token_loss(logp, old, None, torch.ones(2), beta=0.0, epsilon=0.2,
                                    importance_sampling_level="sequence", mask=mask)
    s0, s1 = math.exp(0.1), math.exp(0.45)
    torch.testing.assert_close(stats["ratio"], torch.tensor([[s0] * 3, [s1] * 3]))
    assert stats["clipped"].tolist() == [[False] * 3, [True] * 3]
    torch.testing.assert_close(per_tok[0], torch.full((3,), -s0))
    loss = aggregate(per_tok, mask, "seq_mean_token_mean")
    assert float(loss.detach()) == pytest.approx(-(s0 + 1.2) / 2, abs=1e-6)
    loss.backward()
    # d/d logp_0t of -(1/2) exp(mean_t log-ratio_0t) = -(1/2) * s_0 / 3 on each of row 0's tokens; row 1: clipped.
    torch.testing.assert_close(logp.grad, torch.tensor([[-s0 / 6] * 3, [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="pass mask of shape"):
        per_token_loss(logp, old, None, torch.ones(2), beta=0.0, epsilon=0.2, importance_sampling_level="sequence")


def test_sequence_ratio_of_a_one_token_sequence_is_the_token_ratio():
    logp, old, adv = torch.tensor([[0.3], [-0.4]]), torch.zeros(2, 1), torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 1)
    tok, _ = per_token_loss(logp, old, None, adv, beta=0.0, epsilon=0.2)
    seq, _ = per_token_loss(logp, old, None, adv, beta=0.0, epsilon=0.2, importance_sampling_level="sequence",
                            mask=mask)
    torch.testing.assert_close(seq, tok)


def test_aggregate_rows_leave_outputs_out_of_the_loss_and_the_count():
    # Row 1 is left out (DAPO overlong filtering): rows 0 and 2 only, N = 2.
    per_tok = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    rows = torch.tensor([True, False, True])
    assert float(aggregate(per_tok, mask, "seq_mean_token_mean", rows=rows)) == pytest.approx((1.5 + 7.0) / 2)
    assert float(aggregate(per_tok, mask, "token_mean", rows=rows)) == pytest.approx(10.0 / 3)
    assert float(aggregate(per_tok, mask, "dr_grpo", max_len=3, rows=rows)) == pytest.approx(10.0 / 6)
    assert float(aggregate(per_tok, mask, "seq_mean_token_mean", rows=torch.zeros(3, dtype=torch.bool))) == 0.0
    with pytest.raises(ValueError, match="rows must be"):
        aggregate(per_tok, mask, "token_mean", rows=torch.ones(2, dtype=torch.bool))
