"""The process-reward interface: what a step scorer (a process reward model) hands the trainer.

A `StepScorer` takes one step's rollouts and their problems and returns three
(N, S) tensors over the N completions and their at most S steps:
`step_rewards` (the score of each step), `step_mask` (True where a step exists)
and `step_ends` (the completion-token index at which each step ends, for the
process advantages of DeepSeekMath Eq. 5). prm.score.make_step_scorer builds one
from a trained reward model; tests build them from hand-made rewards.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from grpo_core.data.problem import Problem
from grpo_core.rollout.base import RolloutBatch

StepScorer = Callable[[RolloutBatch, list[Problem]], tuple[Tensor, Tensor, Tensor]]
