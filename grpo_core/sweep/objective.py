"""The sweep's objective: which held-out metric scores a trial, and its name in the store.

    objective = objective_of(cfg)    # Objective(metric='maj_at_k', k=16)
    objective.name                   # 'maj@16': the study's user attribute, the report's label

`greedy_accuracy` and `sample_accuracy` are columns of the store's `evals` view; `maj_at_k` and
`pass_at_k` are columns of its `eval_at_k(k)` macro, at the K of `sweep.objective_k` (default
`eval.k_max`). The value of one evaluation is read from the store by analysis.sweep_report.eval_objective
(the analysis package owns the store's SQL).
"""

from __future__ import annotations

from dataclasses import dataclass

from grpo_core.config import ConfigError, ExperimentConfig, ObjectiveMetric

__all__ = ["Objective", "objective_of"]

AT_K: tuple[ObjectiveMetric, ...] = ("maj_at_k", "pass_at_k")  # the metrics that take a K


@dataclass(frozen=True)
class Objective:
    """A held-out metric and, for maj_at_k / pass_at_k, its K."""

    metric: ObjectiveMetric
    k: int | None = None

    @property
    def name(self) -> str:
        """'maj@16', 'pass@4', 'greedy_accuracy' or 'sample_accuracy'."""
        return f"{self.metric.removesuffix('_at_k')}@{self.k}" if self.metric in AT_K else self.metric


def objective_of(cfg: ExperimentConfig) -> Objective:
    """The objective `cfg.sweep` scores trials by; ConfigError names sweep.objective_k when the evaluation
    draws fewer than K samples (a check across two sections, so not one SweepConfig can make)."""
    s = cfg.sweep
    if s.objective not in AT_K:
        return Objective(s.objective)
    k = s.objective_k if s.objective_k is not None else cfg.eval.k_max
    if k > cfg.eval.k_max:
        raise ConfigError(f"invalid configuration:\n  sweep.objective_k: K = {k} needs eval.k_max >= {k} "
                          f"(eval.k_max is {cfg.eval.k_max}): the evaluation draws no more samples than that")
    return Objective(s.objective, k)
