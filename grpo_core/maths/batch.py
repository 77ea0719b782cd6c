"""Pack rollouts into padded tensors and score their tokens under a model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel


@dataclass
class PackedBatch:
    """Prompts left-padded to P, completions right-padded to T, side by side.

    input_ids (N, P+T); attention_mask (N, P+T); position_ids (N, P+T) count
    real tokens only, so left padding does not shift positions;
    completion_ids (N, T) and completion_mask (N, T) (1 on sampled tokens).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    prompt_len: int

    def select(self, index: torch.Tensor) -> PackedBatch:
        return PackedBatch(
            self.input_ids[index],
            self.attention_mask[index],
            self.position_ids[index],
            self.completion_ids[index],
            self.completion_mask[index],
            self.prompt_len,
        )


def pack(prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int) -> PackedBatch:
    """Build a PackedBatch from token id lists (prompt i pairs with completion i)."""
    n = len(prompt_ids)
    p_len = max(len(p) for p in prompt_ids)
    t_len = max(1, max(len(c) for c in completion_ids))
    ids = torch.full((n, p_len + t_len), pad_id, dtype=torch.long)
    attn = torch.zeros((n, p_len + t_len), dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        ids[i, p_len - len(p) : p_len] = torch.tensor(p, dtype=torch.long)
        attn[i, p_len - len(p) : p_len] = 1
        if c:
            ids[i, p_len : p_len + len(c)] = torch.tensor(c, dtype=torch.long)
            attn[i, p_len : p_len + len(c)] = 1
    position_ids = (attn.cumsum(-1) - 1).clamp(min=0)
    return PackedBatch(
        input_ids=ids,
        attention_mask=attn,
        position_ids=position_ids,
        completion_ids=ids[:, p_len:],
        completion_mask=attn[:, p_len:].float(),
        prompt_len=p_len,
    )


def token_logprobs(model: PreTrainedModel, batch: PackedBatch, temperature: float = 1.0) -> torch.Tensor:
    """log pi(o_t | q, o_<t) of each completion token -> (N, T).

    Logits are divided by the sampling temperature, so the result is the
    log-prob under the distribution the engine sampled from.
    """
    device = next(model.parameters()).device
    out = model(
        input_ids=batch.input_ids.to(device),
        attention_mask=batch.attention_mask.to(device),
        position_ids=batch.position_ids.to(device),
        use_cache=False,
    )
    return completion_logprobs(out.logits, batch.completion_ids.to(device), batch.prompt_len, temperature)


def completion_logprobs(logits: torch.Tensor, completion_ids: torch.Tensor, prompt_len: int,
                        temperature: float = 1.0) -> torch.Tensor:
    """Log-probs of the completion tokens from a forward pass over prompt + completion.

    logits (N, P+T, V) with P = prompt_len; completion_ids (N, T) -> (N, T):
    log softmax(logits[P+t-1] / temperature)[o_t], position P+t-1 predicting token t.
    """
    shifted = logits[:, prompt_len - 1 : -1, :].float() / temperature  # (N, T, V)
    return torch.log_softmax(shifted, dim=-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)  # (N, T)
