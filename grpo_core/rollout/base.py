"""The engine protocol every rollout backend implements (HF generate, vLLM)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass(frozen=True)
class SamplingParams:
    """How to sample: n completions per prompt; greedy ignores temperature/top_p."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    greedy: bool = False
    seed: int = 0


@dataclass
class RolloutBatch:
    """N = len(prompts) * n completions, prompt-major (prompt 0's n samples first).

    `completion_ids[i]` holds the sampled tokens, ending with EOS when
    `finished[i]` (the EOS is sampled, so it is trained on); `logprobs[i][t]` is
    the engine's log-prob of token t under the sampling distribution (logits /
    temperature, before top-p truncation).
    """

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    completions: list[str]
    logprobs: list[list[float]]
    finished: list[bool]
    engine: str
    extra: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.completion_ids)


class RolloutEngine(Protocol):
    """Generates from the current policy; `sync_weights` pushes new weights in."""

    name: str

    def generate(self, prompts: list[str], params: SamplingParams) -> RolloutBatch: ...

    def sync_weights(self, model: torch.nn.Module) -> None: ...
