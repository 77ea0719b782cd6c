"""Group-relative advantages of GRPO (DeepSeekMath, arXiv 2402.03300).

Two pure functions, no config and no model:

- `outcome_advantages`  (Sec. 4.1.2): one reward per output, normalised within
  its group of G outputs; every token of o_i gets A_i.
- `process_advantages`  (Sec. 4.1.3): one reward per reasoning step, normalised
  with the statistics of all steps of all outputs of the group; token t gets
  the suffix sum of the normalised rewards of the steps ending at or after t.
- `add_outcome_to_last_step`: the outcome reward joined to each output's last
  step reward before process advantages (grpo.process_outcome_weight).
- `soft_overlong_penalty`: DAPO's length shaping of the outcome reward
  (grpo.overlong_buffer, grpo.overlong_penalty).

Variants after the paper, each a keyword whose default is the paper's form:
- `scale` (grpo.advantage_scale): divide the centred rewards by the group's std
  (the paper), by the std of all rewards of the batch, or not at all (Dr. GRPO,
  arXiv 2503.20783: mean-only advantages). The mean is always the group's.
- `credit` (grpo.process_credit): a token's process advantage is the sum of the
  normalised step rewards from its step to the end (the paper), or their
  minimum (PURE, arXiv 2504.15275).

Choices the paper leaves open, pinned by tests/test_advantages.py:
- std is the POPULATION std (divide by n, `unbiased=False`): [1, 0, 0, 1]
  gives +-1.0, not +-0.866 as torch's default Bessel-corrected std would (TRL,
  CleanRL use the latter).
- A group whose scores are all equal (max - min <= 1e-8) carries no signal: it
  gets advantage 0 (no division by ~0) and is flagged in the returned
  `zero_std` mask, which the trainer logs as `frac_reward_zero_std`. The test
  is on the range, not on the computed std: eight rewards of 0.7 give a float32
  std of 6e-8 (rounding in the mean), which would otherwise turn into +-1
  advantages of pure noise.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

ZERO_STD = 1e-8  # a group whose max - min is at or below this has "all rewards equal"

AdvantageScale = Literal["group", "batch", "none"]
ProcessCredit = Literal["sum", "min"]


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {choices}")


def _batch_std(values: Tensor) -> Tensor:
    """Population std of all `values` (1-D), 1 where their range is <= ZERO_STD (no division by ~0)."""
    if values.numel() == 0 or float(values.amax() - values.amin()) <= ZERO_STD:
        return torch.ones((), dtype=values.dtype, device=values.device)
    return values.std(unbiased=False)


def _std_divisor(scale: AdvantageScale, group_std: Tensor, zero_std: Tensor, batch_values: Tensor) -> Tensor:
    """What the centred rewards are divided by: each group's std (1 for a zero-std group) for 'group'
    (the paper), the population std of `batch_values` (every reward of the batch) for 'batch', 1 for
    'none' (Dr. GRPO). `group_std` and `zero_std` share a shape; 'batch' and 'none' give a scalar."""
    if scale == "group":
        return torch.where(zero_std, torch.ones_like(group_std), group_std)
    if scale == "batch":
        return _batch_std(batch_values)
    return torch.ones((), dtype=group_std.dtype, device=group_std.device)


def outcome_advantages(rewards: Tensor, scale: AdvantageScale = "group") -> tuple[Tensor, Tensor]:
    """Outcome supervision (Sec. 4.1.2): A_i = (r_i - mean(r)) / std(r) per group.

    rewards: (B, G) one scalar reward per output, B groups (questions) of G outputs.
    scale: the std divided by: 'group' (the paper, std of the group's G rewards),
    'batch' (population std of all B*G rewards), 'none' (A_i = r_i - mean(r), Dr. GRPO).
    Returns (advantages (B, G), zero_std (B,) bool). Broadcast over the tokens
    of o_i by the caller (or pass (N,) = advantages.flatten() to `per_token_loss`).
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (B, G), got shape {tuple(rewards.shape)}")
    _check_choice("scale", scale, AdvantageScale.__args__)
    r = rewards.to(torch.get_default_dtype()) if not rewards.is_floating_point() else rewards
    mean = r.mean(dim=1, keepdim=True)  # (B, 1)
    zero_std = (r.amax(dim=1) - r.amin(dim=1)) <= ZERO_STD  # (B,) all rewards equal
    std = r.std(dim=1, unbiased=False, keepdim=True)  # (B, 1) population std
    adv = (r - mean) / _std_divisor(scale, std, zero_std.unsqueeze(1), r.flatten())  # (B, G)
    adv = torch.where(zero_std.unsqueeze(1), torch.zeros_like(adv), adv)  # (B, G)
    return adv, zero_std


def process_advantages(
    step_rewards: Tensor,
    step_mask: Tensor,
    step_ends: Tensor,
    group_index: Tensor,
    n_tokens: int,
    *,
    scale: AdvantageScale = "group",
    credit: ProcessCredit = "sum",
) -> tuple[Tensor, Tensor]:
    """Process supervision (Sec. 4.1.3): suffix sums of group-normalised step rewards.

    step_rewards: (N, S) r_i^(j), padded; only entries where step_mask is True count.
    step_mask:    (N, S) bool, valid steps.
    step_ends:    (N, S) long, completion-token index of the last token of step j
                  (0 <= end < n_tokens for valid steps; padding may hold anything).
    group_index:  (N,) long in [0, num_groups), the group (question) of each output.
    n_tokens:     T, the completion length of the returned advantages.

    R_g = { r_i^(j) : i in group g, j valid };  r~_i^(j) = (r_i^(j) - mean(R_g)) / std(R_g)
    A_it = sum_{j : end_ij >= t} r~_i^(j); tokens after the last step's end get 0.
    scale='batch' divides by the population std of every valid step reward of the batch,
    'none' by nothing (the mean stays the group's). credit='min' (PURE, arXiv 2504.15275):
    A_it = min_{j : end_ij >= t} r~_i^(j), the worst normalised step reward from t on.
    Returns (advantages (N, T), zero_std (num_groups,) bool) with
    num_groups = group_index.max() + 1. A group whose valid step rewards are all
    equal (max - min <= 1e-8), or that has none, is zero-std and gets 0.
    """
    if step_rewards.dim() != 2:
        raise ValueError(f"step_rewards must be (N, S), got shape {tuple(step_rewards.shape)}")
    if step_mask.shape != step_rewards.shape or step_ends.shape != step_rewards.shape:
        raise ValueError(
            f"step_mask {tuple(step_mask.shape)} and step_ends {tuple(step_ends.shape)} "
            f"must match step_rewards {tuple(step_rewards.shape)}"
        )
    N, S = step_rewards.shape
    _check_choice("scale", scale, AdvantageScale.__args__)
    _check_choice("credit", credit, ProcessCredit.__args__)
    if group_index.shape != (N,):
        raise ValueError(f"group_index must be (N,) = ({N},), got {tuple(group_index.shape)}")
    valid = step_mask.bool()  # (N, S)
    if valid.any():
        ends_valid = step_ends[valid]
        if int(ends_valid.min()) < 0 or int(ends_valid.max()) >= n_tokens:
            raise ValueError(
                f"step_ends of valid steps must lie in [0, n_tokens={n_tokens}), "
                f"got range [{int(ends_valid.min())}, {int(ends_valid.max())}]"
            )
    r = step_rewards if step_rewards.is_floating_point() else step_rewards.to(torch.get_default_dtype())
    num_groups = int(group_index.max()) + 1 if N > 0 else 0
    if S == 0:  # no steps at all: no signal anywhere
        return r.new_zeros(N, n_tokens), torch.ones(num_groups, dtype=torch.bool, device=r.device)
    g = group_index.long()  # (N,)
    zero = torch.zeros((), dtype=r.dtype, device=r.device)

    # Group statistics over all valid steps of all outputs of the group (two passes).
    r_valid = torch.where(valid, r, zero)  # (N, S)
    count = torch.zeros(num_groups, dtype=r.dtype, device=r.device).index_add_(
        0, g, valid.to(r.dtype).sum(dim=1)
    )  # (num_groups,) |R_g|
    total = torch.zeros_like(count).index_add_(0, g, r_valid.sum(dim=1))  # (num_groups,)
    mean = total / count.clamp(min=1)  # (num_groups,)
    dev = torch.where(valid, r - mean[g].unsqueeze(1), zero)  # (N, S) r - mean(R_g)
    var = torch.zeros_like(count).index_add_(0, g, (dev**2).sum(dim=1)) / count.clamp(min=1)
    std = var.sqrt()  # (num_groups,) population std
    inf = torch.tensor(float("inf"), dtype=r.dtype, device=r.device)
    row_max = torch.where(valid, r, -inf).amax(dim=1)  # (N,) -inf for a row without steps
    row_min = torch.where(valid, r, inf).amin(dim=1)  # (N,) +inf for a row without steps
    g_max = torch.full((num_groups,), -inf, dtype=r.dtype, device=r.device).scatter_reduce_(
        0, g, row_max, "amax"
    )  # (num_groups,) max of R_g (-inf if empty)
    g_min = torch.full((num_groups,), inf, dtype=r.dtype, device=r.device).scatter_reduce_(
        0, g, row_min, "amin"
    )  # (num_groups,) min of R_g (+inf if empty)
    zero_std = (g_max - g_min) <= ZERO_STD  # (num_groups,) all step rewards equal, or none
    safe_std = _std_divisor(scale, std[g].unsqueeze(1), zero_std[g].unsqueeze(1), r[valid])  # (N, 1) or ()
    r_norm = dev / safe_std  # (N, S) r~_i^(j)
    r_norm = torch.where(zero_std[g].unsqueeze(1), zero, r_norm)  # (N, S) no signal -> 0

    ends = torch.where(valid, step_ends.long(), torch.zeros_like(step_ends, dtype=torch.long))  # (N, S)
    if credit == "min":
        # Place each step's r~ at its end token (+inf elsewhere), then take minima from the right:
        # A_it = min_{t' >= t} placed_it' = min_{j : end_ij >= t} r~_i^(j); +inf (no step left) -> 0.
        placed = torch.full((N, n_tokens), float("inf"), dtype=r.dtype, device=r.device).scatter_reduce_(
            1, ends, torch.where(valid, r_norm, inf), "amin"
        )  # (N, T); padded steps offer +inf at index 0
        adv = placed.flip(1).cummin(1).values.flip(1)  # (N, T) suffix minima
        return torch.where(torch.isinf(adv), zero, adv), zero_std
    # Place each step's r~ at its end token, then sum from the right:
    # A_it = sum_{t' >= t} placed_it' = sum_{j : end_ij >= t} r~_i^(j).
    placed = torch.zeros(N, n_tokens, dtype=r.dtype, device=r.device).scatter_add_(
        1, ends, r_norm
    )  # (N, T); padded steps add 0 at index 0
    adv = placed.flip(1).cumsum(1).flip(1)  # (N, T) suffix sums
    return adv, zero_std


def add_outcome_to_last_step(step_rewards: Tensor, step_mask: Tensor, outcome: Tensor, weight: float) -> Tensor:
    """r_i^(K_i) += weight * outcome_i: each output's outcome reward joins its last step's reward.

    step_rewards, step_mask (N, S), valid steps first in each row; outcome (N,). With process
    advantages every token of o_i then also carries the group-normalised outcome, so a learned
    PRM's errors are anchored by the outcome reward (as PRM + ORM combinations do; the paper uses
    the PRM alone, weight 0). An output without steps is left as it is; the input is not modified.
    """
    if outcome.shape != step_rewards.shape[:1]:
        raise ValueError(f"outcome must be (N,) = ({step_rewards.shape[0]},), got {tuple(outcome.shape)}")
    n_steps = step_mask.long().sum(dim=1)  # (N,)
    has = n_steps > 0  # (N,)
    rows = torch.arange(step_rewards.shape[0])[has]
    out = step_rewards.clone()
    out[rows, n_steps[has] - 1] += weight * outcome[has].to(out.dtype)
    return out


def soft_overlong_penalty(lengths: Tensor, max_len: int, buffer: int, coef: float) -> Tensor:
    """DAPO's soft overlong punishment (arXiv 2503.14476, Eq. 13), added to the outcome reward.

    lengths (N,) |o_i| in tokens; max_len L_max (the generation budget); buffer L_cache.
    R_length = 0 for |o| <= L_max - L_cache, ((L_max - L_cache) - |o|) / L_cache inside the
    last L_cache tokens of the budget, -1 beyond L_max; returned times `coef` -> (N,).
    buffer = 0 gives zeros (no shaping).
    """
    if not 0 <= buffer <= max_len:
        raise ValueError(f"overlong buffer must lie in [0, max_len={max_len}], got {buffer}")
    n = lengths.to(torch.get_default_dtype())  # (N,)
    if buffer == 0:
        return torch.zeros_like(n)
    penalty = ((max_len - buffer) - n).clamp(max=0) / buffer  # (N,) 0, then linear down to -1 at L_max
    return coef * penalty.clamp(min=-1.0)  # (N,) -1 past the budget
