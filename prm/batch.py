"""Token ids and step-tag positions of labelled solutions, packed for the reward model.

A solution is tokenised as the policy saw it: prompt ids, then completion ids
(no special tokens added), each tokenised on its own. The head of a process RM
reads the token that ends each step (`grpo_core.maths.steps.step_token_ends`: the token
holding the closing delimiter, even when that token also holds neighbouring text
such as "?\\n"; the last token of a final step without a delimiter). An outcome
RM reads one position: the end of the last step (the last token carrying text).

Packing reuses `grpo_core.maths.batch.pack`: prompts left-padded to P, completions
right-padded to T, so a completion token index t sits at column P + t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from grpo_core.maths.batch import pack
from grpo_core.maths.steps import step_token_ends
from prm.data import LabelError, LabelledSolution

Kind = Literal["process", "outcome"]


@dataclass(frozen=True)
class Encoded:
    """One solution as token ids, with the completion index of each step's end."""

    prompt_ids: list[int]
    completion_ids: list[int]
    ends: list[int]  # (S,) completion-token index of the token ending step j
    targets: list[float]  # (S,) training target per step (or (1,) for an outcome RM)
    exact: list[bool | None]  # (S,) exact labels ((1,) for an outcome RM)


@dataclass
class RMBatch:
    """Tensors for RewardModel.forward plus targets.

    input_ids, attention_mask, position_ids (N, P+T); gather_index (N, S) long
    columns into P+T; gather_mask (N, S) bool; targets (N, S) float in [0, 1];
    exact (N, S) float: 1/0 where an exact label exists, NaN elsewhere;
    prompt_len P: the column of the first completion token.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    gather_index: torch.Tensor
    gather_mask: torch.Tensor
    targets: torch.Tensor
    exact: torch.Tensor
    prompt_len: int

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def encode_solution(
    solution: LabelledSolution,
    tokenizer: Any,
    delimiter: str,
    kind: Kind = "process",
    label: Literal["hard", "soft"] = "hard",
) -> Encoded:
    """Tokenise one solution and find its read positions."""
    prompt_ids = tokenizer(solution.prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(solution.completion(delimiter), add_special_tokens=False)["input_ids"]
    spans = step_token_ends(completion_ids, tokenizer, delimiter)
    if len(spans.ends) != len(solution.steps):
        raise LabelError(
            f"problem {solution.problem_id!r} solution {solution.key[-1]}: field 'step_text': "
            f"{len(solution.steps)} labelled steps but the tokenised completion has {len(spans.ends)}; "
            "steps count mismatch"
        )
    if kind == "outcome":
        return Encoded(prompt_ids, completion_ids, spans.ends[-1:], [float(solution.correct)], solution.exact[-1:])
    targets = [float(h) for h in solution.hard] if label == "hard" else list(solution.soft)
    return Encoded(prompt_ids, completion_ids, spans.ends, targets, list(solution.exact))


def collate(items: Sequence[Encoded], pad_id: int) -> RMBatch:
    """Pack encoded solutions; gather positions are offset by the padded prompt length P."""
    packed = pack([e.prompt_ids for e in items], [e.completion_ids for e in items], pad_id)
    n, s = len(items), max(len(e.ends) for e in items)
    gather_index = torch.zeros((n, s), dtype=torch.long)  # (N, S)
    gather_mask = torch.zeros((n, s), dtype=torch.bool)  # (N, S)
    targets = torch.zeros((n, s))  # (N, S)
    exact = torch.full((n, s), float("nan"))  # (N, S)
    for i, e in enumerate(items):
        k = len(e.ends)
        gather_index[i, :k] = packed.prompt_len + torch.tensor(e.ends, dtype=torch.long)  # P + t
        gather_mask[i, :k] = True
        targets[i, :k] = torch.tensor(e.targets)
        exact[i, :k] = torch.tensor([float("nan") if x is None else float(x) for x in e.exact])
    return RMBatch(packed.input_ids, packed.attention_mask, packed.position_ids, gather_index, gather_mask,
                   targets, exact, packed.prompt_len)
