"""The GRPO loss (DeepSeekMath, arXiv 2402.03300, Eq. 3 with the k3 KL of Eq. 4).

Three pure functions:
- `per_token_loss`: the negated per-token term of Eq. 3, shape (N, T), plus
  per-token stats (KL, ratio, clipped). No reduction happens here.
- `aggregate`: the masked reduction to a scalar, a named variant:
    seq_mean_token_mean  mean_i (1/|o_i|) sum_t      (paper, Eq. 3; default)
    token_mean           sum_i sum_t / sum_i |o_i|   (DAPO)
    dr_grpo              sum_i sum_t / (N * max_len) (Dr. GRPO, constant length)
- `loss_metrics`: masked means of the stats, as floats for logging.

Departures from Eq. 3, all off by default:
- `epsilon_high` (DAPO "clip-higher") makes the clip range asymmetric,
  [1 - epsilon, 1 + epsilon_high]; None keeps the paper's symmetric clip.
- beta == 0 or no reference log-probs drops the KL term (as TRL's default).
- `importance_sampling_level='sequence'` (GSPO, arXiv 2507.18071): one ratio per
  sequence, s_i = exp(mean_t (log pi_theta - log pi_old)) = (pi_theta(o_i) /
  pi_old(o_i))^(1/|o_i|), clipped once per sequence, in place of rho_it.
- `rows` of `aggregate` leaves whole outputs out of the loss (DAPO's overlong
  filtering masks truncated completions).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

LossAgg = Literal["seq_mean_token_mean", "token_mean", "dr_grpo"]
ImportanceSamplingLevel = Literal["token", "sequence"]


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimate of KL(pi_theta || pi_ref) (Eq. 4): pi_ref/pi - log(pi_ref/pi) - 1 >= 0."""
    log_ref_over_pi = ref_logp - logp  # (N, T) log(pi_ref / pi_theta)
    return torch.exp(log_ref_over_pi) - log_ref_over_pi - 1.0  # (N, T)


def per_token_loss(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor | None,
    advantages: Tensor,
    *,
    beta: float,
    epsilon: float,
    epsilon_high: float | None = None,
    importance_sampling_level: ImportanceSamplingLevel = "token",
    mask: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Negated per-token GRPO objective (Eq. 3, k3 KL of Eq. 4).

    logp, old_logp, ref_logp: (N, T) log pi(o_it | q, o_i<t) of the sampled tokens
        under pi_theta (with grad), pi_old and pi_ref; ref_logp may be None.
    advantages: (N, T) A_it, or (N,) broadcast over the tokens of each output.
    importance_sampling_level: 'token' (Eq. 3, rho_it) or 'sequence' (GSPO: s_i of the
        module docstring for every token of o_i; needs `mask` (N, T), the completion tokens).
    Returns (loss (N, T), stats) where stats hold detached (N, T) tensors:
        'kl' (k3 per token; zeros when ref_logp is None), 'ratio' (rho),
        'clipped' (bool: the clipped branch is the minimum, so the surrogate
        gives this token no gradient).
    Padding positions are computed like any other; `aggregate` masks them.
    """
    if logp.shape != old_logp.shape or (ref_logp is not None and ref_logp.shape != logp.shape):
        raise ValueError(
            f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)} and ref_logp "
            f"{None if ref_logp is None else tuple(ref_logp.shape)} must have one shape (N, T)"
        )
    A = advantages.unsqueeze(-1) if advantages.dim() == logp.dim() - 1 else advantages  # (N, 1) or (N, T)
    eps_high = epsilon if epsilon_high is None else epsilon_high

    if importance_sampling_level == "token":
        ratio = torch.exp(logp - old_logp)  # (N, T) rho_it = pi_theta / pi_old
    elif importance_sampling_level == "sequence":
        if mask is None or mask.shape != logp.shape:
            raise ValueError("importance_sampling_level='sequence' averages over the completion tokens: "
                             f"pass mask of shape {tuple(logp.shape)}")
        m = mask.to(logp.dtype)  # (N, T)
        log_ratio = torch.where(m != 0, logp - old_logp, torch.zeros_like(logp))  # (N, T) padding -> 0
        seq = log_ratio.sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp(min=1)  # (N, 1)
        ratio = torch.exp(seq).expand_as(logp)  # (N, T) s_i on every token of o_i (GSPO)
    else:
        raise ValueError(f"importance_sampling_level={importance_sampling_level!r} is not one of "
                         f"{ImportanceSamplingLevel.__args__}")
    unclipped = ratio * A  # (N, T) rho * A
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + eps_high) * A  # (N, T) clip(rho) * A
    surrogate = torch.minimum(unclipped, clipped)  # (N, T) Eq. 3 pessimistic bound
    loss = -surrogate  # (N, T) we minimise the negated objective

    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp)  # (N, T)
        if beta != 0.0:
            loss = loss + beta * kl  # (N, T) -(surrogate - beta * KL)
    else:
        kl = torch.zeros_like(logp)  # (N, T) no reference, no KL

    # Clipped branch active <=> (rho > 1 + eps_high and A > 0) or (rho < 1 - eps and A < 0).
    is_clipped = clipped < unclipped  # (N, T) bool
    stats = {"kl": kl.detach(), "ratio": ratio.detach(), "clipped": is_clipped.detach()}
    return loss, stats


def aggregate(
    per_token: Tensor,
    mask: Tensor,
    mode: LossAgg,
    *,
    max_len: int | None = None,
    rows: Tensor | None = None,
) -> Tensor:
    """Reduce a (N, T) per-token loss over the completion tokens in `mask` to a scalar.

    mask: (N, T) bool or float, 1 on completion tokens (padding values of
    per_token are ignored, even NaN). An output with no tokens contributes 0 and
    still counts in N for seq_mean_token_mean and dr_grpo; an all-empty batch
    gives 0, never NaN.
    max_len: the constant generation budget (rollout.max_new_tokens); required
    for dr_grpo and ignored otherwise.
    rows: (N,) bool, the outputs in the loss (None = all); the others contribute
    nothing and do not count in N either (DAPO overlong filtering).
    """
    if per_token.shape != mask.shape:
        raise ValueError(f"per_token {tuple(per_token.shape)} and mask {tuple(mask.shape)} must match")
    if rows is not None and rows.shape != per_token.shape[:1]:
        raise ValueError(f"rows must be (N,) = ({per_token.shape[0]},), got {tuple(rows.shape)}")
    m = mask.to(per_token.dtype)  # (N, T) 0/1 weights
    if rows is not None:
        m = m * rows.to(m.dtype).unsqueeze(1)  # (N, T) left-out outputs have no tokens
    masked = torch.where(m != 0, per_token * m, torch.zeros_like(per_token))  # (N, T) padding -> 0
    N = per_token.shape[0] if rows is None else int(rows.sum())
    if mode == "seq_mean_token_mean":
        lengths = m.sum(dim=1)  # (N,) |o_i|
        per_seq = masked.sum(dim=1) / lengths.clamp(min=1)  # (N,) (1/|o_i|) sum_t
        return per_seq.sum() / max(N, 1)  # mean_i
    if mode == "token_mean":
        return masked.sum() / m.sum().clamp(min=1)  # sum_i sum_t / sum_i |o_i|
    if mode == "dr_grpo":
        if max_len is None or max_len <= 0:
            raise ValueError(
                "loss_agg='dr_grpo' divides by the constant generation budget: "
                f"pass max_len = rollout.max_new_tokens (> 0), got {max_len!r}"
            )
        return masked.sum() / (max(N, 1) * max_len)  # sum_i sum_t / (N * max_len)
    raise ValueError(f"unknown loss aggregation {mode!r}; use one of {LossAgg.__args__}")


def loss_metrics(stats: dict[str, Tensor], mask: Tensor) -> dict[str, float]:
    """Token-level masked means of the stats of `per_token_loss`, as plain floats.

    Returns 'kl' (mean k3), 'clip_frac' (share of tokens on the clipped branch),
    'ratio_min', 'ratio_max', 'ratio_mean' over the tokens in mask (N, T).
    With no tokens in mask every value is NaN (nothing was measured).
    """
    keep = mask.bool()  # (N, T)
    n = int(keep.sum())
    if n == 0:
        return {k: math.nan for k in ("kl", "clip_frac", "ratio_min", "ratio_max", "ratio_mean")}
    kl = stats["kl"].detach()[keep]  # (n,)
    ratio = stats["ratio"].detach()[keep]  # (n,)
    clipped = stats["clipped"].detach()[keep]  # (n,)
    return {
        "kl": float(kl.float().mean()),
        "clip_frac": float(clipped.float().mean()),
        "ratio_min": float(ratio.min()),
        "ratio_max": float(ratio.max()),
        "ratio_mean": float(ratio.float().mean()),
    }
