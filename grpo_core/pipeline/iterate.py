"""Algorithm 1's outer loop (DeepSeekMath Sec. 4.2, iterative RL), written once.

    result = run_iterations(cfg, stages, run_id)

Iteration 0 is the evaluation of the starting policy. Each iteration i >= 1:
reference <- policy (the GRPO stage starts from, and regularises towards, the
policy it is given); with process supervision, label fresh samples of the policy
(Math-Shepherd) and continue the reward model on them plus a replay of older
labels (from `prm.init_path` or the policy the first time); M GRPO steps;
evaluate. The Prefect flow (flows.grpo), a sweep trial (flows.trial) and the
multi-process launcher (flows.launch) all call this function and differ only in
the `Stages` they hand it: Prefect tasks, or plain calls.

Nothing here imports Prefect, the PRM package or the analysis package: the
stages are supplied by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from grpo_core.config import ExperimentConfig

Evaluation = dict[str, float]


@dataclass(frozen=True)
class Stages:
    """How each stage of an iteration runs (plain calls, or Prefect tasks wrapping the same functions).

    Every stage takes plain values and returns a path (str) or a small dict, never a model."""

    bootstrap_policy: Callable[[ExperimentConfig], str]
    # (cfg, policy, run_id, iteration, step, trial_id) -> evaluation
    evaluate: Callable[[ExperimentConfig, str, str, int, int, str | None], Evaluation]
    # (cfg, policy, run_id, iteration) -> labelled steps
    label_steps: Callable[[ExperimentConfig, str, str, int], int]
    # (cfg, init dir, run_id, iteration) -> reward model dir
    train_reward_model: Callable[[ExperimentConfig, str, str, int], str]
    # (cfg, policy, run_id, iteration, reward model dir, trial_id) -> new policy dir
    grpo: Callable[[ExperimentConfig, str, str, int, str | None, str | None], str]


# Called after each evaluation with (iteration, evaluation); True stops the loop before the next
# iteration (a pruned sweep trial).
OnEvaluation = Callable[[int, Evaluation], bool]


@dataclass
class IterativeResult:
    """What the iterations produced: the final policy and reward model dirs and every evaluation."""

    run_id: str
    policy: str
    reward_model: str | None
    evals: dict[int, Evaluation] = field(default_factory=dict)
    stopped_early: bool = False


def run_iterations(cfg: ExperimentConfig, stages: Stages, run_id: str, *, trial_id: str | None = None,
                   evaluate_start: bool = True, on_evaluation: OnEvaluation | None = None) -> IterativeResult:
    """Evaluate the starting policy (unless `evaluate_start` is False), then run `iterative.iterations`
    iterations of Algorithm 1 through `stages`, calling `on_evaluation` after each evaluation."""
    policy = stages.bootstrap_policy(cfg)
    result = IterativeResult(run_id, policy, None)
    last = cfg.iterative.iterations

    def evaluated(iteration: int, step: int) -> bool:
        """Evaluate the current policy; True when the caller asks to stop before the next iteration."""
        result.evals[iteration] = stages.evaluate(cfg, result.policy, run_id, iteration, step, trial_id)
        stop = on_evaluation is not None and on_evaluation(iteration, result.evals[iteration])
        result.stopped_early = stop and iteration < last
        return result.stopped_early

    if evaluate_start and evaluated(0, 0):
        return result
    for iteration in range(1, last + 1):
        if cfg.grpo.supervision == "process":
            stages.label_steps(cfg, result.policy, run_id, iteration)
            init = result.reward_model or str(first_reward_model_init(cfg, result.policy))
            result.reward_model = stages.train_reward_model(cfg, init, run_id, iteration)
        result.policy = stages.grpo(cfg, result.policy, run_id, iteration, result.reward_model, trial_id)
        if evaluated(iteration, cfg.grpo.steps):
            break
    return result


def first_reward_model_init(cfg: ExperimentConfig, policy: Path | str) -> Path:
    """The dir a run's first reward model starts from: prm.init_path if set, else the policy."""
    return Path(cfg.prm.init_path or policy)
