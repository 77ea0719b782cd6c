"""Turn one batch of rollouts into rows of the store's `rollouts` table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grpo_core.data.problem import Problem
from grpo_core.rollout.base import RolloutBatch
from grpo_core.reward.verify import Verdict


@dataclass(frozen=True)
class RunKey:
    """Where rows belong: run, sweep trial, iteration, step."""

    run_id: str
    trial_id: str | None
    iteration: int
    step: int


def rollout_rows(
    key: RunKey,
    split: str,
    decoding: str,
    prompts: list[str],
    problems: list[Problem],
    batch: RolloutBatch,
    verdicts: list[Verdict],
    rewards: Sequence[float],
    *,
    group_size: int,
    advantages: Sequence[float] | None = None,
    kl: Sequence[float] | None = None,
    step_rewards: Sequence[Sequence[float]] | None = None,
    reward_model: str | None = None,
    entropy: Sequence[float] | None = None,
    group_index: Sequence[int] | None = None,
    draw: Sequence[int] | None = None,
    filtered: bool = False,
) -> list[dict]:
    """One dict per completion (the store stamps created_at); `prompts`/`problems` have one entry per group.

    Per group: `group_index` (default 0, 1, ...) and `draw` (dynamic sampling's draw, default 0);
    `filtered` marks every row as dropped from the loss by dynamic sampling.
    """
    rows = []
    for i in range(len(batch)):
        g = i // group_size
        rows.append(
            {
                "run_id": key.run_id,
                "trial_id": key.trial_id,
                "iteration": key.iteration,
                "step": key.step,
                "split": split,
                "decoding": decoding,
                "problem_id": problems[g].problem_id,
                "group_index": group_index[g] if group_index is not None else g,
                "draw": draw[g] if draw is not None else 0,
                "filtered": filtered,
                "sample_index": i % group_size,
                "prompt": prompts[g],
                "completion": batch.completions[i],
                "gold": problems[g].answer,
                "answer": verdicts[i].answer,
                "answer_norm": verdicts[i].normalized,
                "correct": verdicts[i].correct,
                "reward": float(rewards[i]),
                "step_rewards": list(step_rewards[i]) if step_rewards is not None else None,
                "advantage": float(advantages[i]) if advantages is not None else None,
                "n_tokens": len(batch.completion_ids[i]),
                "finished": batch.finished[i],
                "kl": float(kl[i]) if kl is not None else None,
                "entropy": float(entropy[i]) if entropy is not None else None,
                "logprob_sum": float(sum(batch.logprobs[i])),
                "engine": batch.engine,
                "reward_model": reward_model,
            }
        )
    return rows
