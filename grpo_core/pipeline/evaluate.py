"""Held-out evaluation: greedy accuracy and n samples per problem at temperature.

The sampled completions land in the store, where Pass@K and Maj@K are SQL
(`analysis/sql/pass_at_k_per_problem.sql`, `maj_at_k_per_problem.sql`: their one
definition, the estimators and their bias), so every K is computable after the
fact from the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from grpo_core.config import EvalConfig, RolloutConfig
from grpo_core.data.loaders import format_prompt
from grpo_core.data.problem import Problem
from grpo_core.store.records import RunKey, rollout_rows
from grpo_core.reward.functions import verdicts_for
from grpo_core.rollout.base import RolloutEngine, SamplingParams


@dataclass(frozen=True)
class EvalResult:
    """Greedy figures and the rows to store (greedy and sampled)."""

    greedy_accuracy: float
    wellformed_rate: float
    sample_accuracy: float | None
    n_problems: int
    rows: list[dict]


def evaluate(
    engine: RolloutEngine,
    problems: list[Problem],
    template: str,
    eval_cfg: EvalConfig,
    rollout_cfg: RolloutConfig,
    key: RunKey,
    *,
    with_samples: bool = True,
) -> EvalResult:
    """Greedy-decode every problem (and sample `n_samples` each when asked)."""
    problems = problems[: eval_cfg.n_problems]
    prompts = [format_prompt(p, template) for p in problems]
    greedy = engine.generate(prompts, SamplingParams(n=1, greedy=True, max_new_tokens=rollout_cfg.max_new_tokens))
    verdicts = verdicts_for(greedy.completions, problems)
    correct = [float(v.correct) for v in verdicts]
    rows = rollout_rows(key, "eval", "greedy", prompts, problems, greedy, verdicts, correct, group_size=1)
    sample_accuracy = None
    if with_samples:
        params = SamplingParams(
            n=eval_cfg.n_samples,
            temperature=eval_cfg.temperature,
            top_p=rollout_cfg.top_p,
            max_new_tokens=rollout_cfg.max_new_tokens,
            seed=key.step + 7919 * key.iteration,
        )
        sampled = engine.generate(prompts, params)
        repeated = [p for p in problems for _ in range(eval_cfg.n_samples)]
        s_verdicts = verdicts_for(sampled.completions, repeated)
        s_correct = [float(v.correct) for v in s_verdicts]
        rows += rollout_rows(
            key, "eval", "sample", prompts, problems, sampled, s_verdicts, s_correct, group_size=eval_cfg.n_samples
        )
        sample_accuracy = sum(s_correct) / len(s_correct)
    return EvalResult(
        greedy_accuracy=sum(correct) / len(correct),
        wellformed_rate=sum(v.answer is not None for v in verdicts) / len(verdicts),
        sample_accuracy=sample_accuracy,
        n_problems=len(problems),
        rows=rows,
    )
