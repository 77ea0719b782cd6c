"""Reward-model scores for rollouts: the trainer's StepScorer, and Math-Shepherd solution scores.

    scorer = make_step_scorer(rm, tokenizer, delimiter="\\n")
    train_grpo(cfg, ..., step_scorer=scorer, reward_model=rm.version)

For a process RM the scorer reads the head at every step's end token
(`grpo_core.maths.steps.step_token_ends` of the sampled completion ids, offset by the
padded prompt length; see `read_positions` for a last step followed by a
delimiter) and returns sigmoid scores as step rewards r_i^(j) (Sec. 4.1.3);
step_ends are exactly step_token_ends' ends. For an outcome RM it returns one "step" per output: the score
read at the last token carrying text, with its end at the last completion token
(EOS included), so process_advantages gives every token of o_i the same
normalised reward, as outcome supervision does (Sec. 4.1.2).

The RM must share the policy's tokenizer (the default: initialised from the
policy dir), since it reads the policy's sampled token ids directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from grpo_core.config import Precision
from grpo_core.data.problem import Problem
from grpo_core.device import autocast, resolve_device
from grpo_core.maths.batch import pack
from grpo_core.maths.steps import step_token_ends
from grpo_core.policy.load import load_tokenizer
from grpo_core.reward.process import StepScorer
from grpo_core.rollout.base import RolloutBatch
from prm.model import RewardModel


def read_positions(ids: list[int], tokenizer: Any, delimiter: str, kind: str = "process"
                   ) -> tuple[list[int], list[int]]:
    """(read positions, advantage ends) of one completion, both completion-token indices.

    ends = step_token_ends(ids).ends. The head reads there too, except for a last
    step followed by a delimiter (or trailing text-free whitespace): training
    text has no delimiter after the last step, so the head reads the token ending
    the step's own text, as in training. An outcome RM reads only that last
    position, and its one "step" ends at the last token (EOS included).
    """
    spans = step_token_ends(ids, tokenizer, delimiter)
    reads = list(spans.ends)
    if reads:
        text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if not text.endswith(spans.steps[-1]):  # something (a delimiter) closes the last step
            trimmed = step_token_ends(ids[: reads[-1]], tokenizer, delimiter)  # drop the closing token
            if trimmed.steps == spans.steps:  # the closing token held only the delimiter
                reads[-1] = trimmed.ends[-1]
    if kind == "outcome":
        return reads[-1:], [len(ids) - 1] if reads else []
    return reads, list(spans.ends)


def _read_positions(completion_ids: list[list[int]], tokenizer: Any, delimiter: str,
                    kind: str) -> tuple[list[list[int]], list[list[int]]]:
    pairs = [read_positions(ids, tokenizer, delimiter, kind) for ids in completion_ids]
    return [r for r, _ in pairs], [e for _, e in pairs]


@torch.no_grad()
def score_rollouts(
    model: RewardModel, tokenizer: Any, batch: RolloutBatch, delimiter: str = "\n", batch_size: int = 64,
    precision: Precision = "fp32",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores of a rollout batch -> (step_rewards (N, S) float in (0, 1), step_mask (N, S) bool,
    step_ends (N, S) long completion-token indices < T), T = longest completion, S >= 1, on the CPU.

    Each batch goes to the model's device; its forward pass runs at `precision` (grpo_core.device.autocast)."""
    n = len(batch)
    reads, ends = _read_positions(batch.completion_ids, tokenizer, delimiter, model.kind)
    s = max(1, max((len(r) for r in reads), default=0))
    rewards = torch.zeros((n, s))  # (N, S)
    mask = torch.zeros((n, s), dtype=torch.bool)  # (N, S)
    step_ends = torch.zeros((n, s), dtype=torch.long)  # (N, S)
    for i in range(n):
        mask[i, : len(reads[i])] = True
        step_ends[i, : len(ends[i])] = torch.tensor(ends[i], dtype=torch.long)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        packed = pack(batch.prompt_ids[lo:hi], batch.completion_ids[lo:hi], tokenizer.pad_token_id)
        gather = torch.zeros((hi - lo, s), dtype=torch.long)  # (n, S) columns into P+T
        for i in range(lo, hi):
            gather[i - lo, : len(reads[i])] = packed.prompt_len + torch.tensor(reads[i], dtype=torch.long)
        packed = packed.to(device)
        with autocast(device, precision):
            logits = model(packed.input_ids, packed.attention_mask, packed.position_ids, gather.to(device),
                           mask[lo:hi].to(device), packed.prompt_len)  # (n, S)
        rewards[lo:hi] = torch.sigmoid(logits.float()).cpu()
    model.train(was_training)
    return rewards.masked_fill(~mask, 0.0), mask, step_ends


def make_step_scorer(model: RewardModel, tokenizer: Any, delimiter: str = "\n", batch_size: int = 64,
                     precision: Precision = "fp32") -> StepScorer:
    """A grpo_core.reward.process.StepScorer backed by `model` (problems are not needed to score)."""

    def scorer(batch: RolloutBatch, problems: list[Problem]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if len(problems) != len(batch):
            raise ValueError(f"{len(problems)} problems for {len(batch)} rollouts")
        return score_rollouts(model, tokenizer, batch, delimiter, batch_size, precision)

    return scorer


def solution_scores(step_rewards: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """Math-Shepherd ranking score of each solution: its minimum step score.

    step_rewards, step_mask (N, S) -> (N,); a solution without steps scores 0.
    """
    inf = torch.tensor(float("inf"), dtype=step_rewards.dtype)
    lowest = torch.where(step_mask.bool(), step_rewards, inf).amin(dim=1)  # (N,)
    return torch.where(step_mask.any(dim=1), lowest, torch.zeros_like(lowest))


def load_step_scorer(path: Path, delimiter: str = "\n", *, device: str = "cpu",
                     precision: Precision = "fp32") -> tuple[StepScorer, str]:
    """(StepScorer, version) of the reward model saved in `path`, on the config's `device` (a knob value:
    auto, cpu, cuda, cuda:N), scoring at `precision`."""
    model = RewardModel.load(path, device=resolve_device(device))
    return make_step_scorer(model, load_tokenizer(path), delimiter, precision=precision), model.version
