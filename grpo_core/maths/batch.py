"""Pack rollouts into padded tensors and score their tokens under a model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel


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

    def to(self, device: torch.device | str) -> PackedBatch:
        """The batch with every tensor on `device` (one copy each; pack builds it on the CPU)."""
        return PackedBatch(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device),
                           self.completion_ids.to(device), self.completion_mask.to(device), self.prompt_len)


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


def token_logprobs(model: PreTrainedModel, batch: PackedBatch, temperature: float = 1.0,
                   bucket: int = 32, *, entropy: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """log pi(o_t | q, o_<t) of each completion token -> (N, T).

    entropy=True returns (log-probs, entropies): H_t = -sum_v pi(v | q, o_<t) log pi(v | q, o_<t)
    of the same (temperature-scaled) distributions, (N, T), detached; from the same logits.

    Logits are divided by the sampling temperature, so the result is the
    log-prob under the distribution the engine sampled from.

    The forward pass does only the work the result needs, in two parts: each
    distinct prompt once (a GRPO batch holds every question G times), up to its
    longest member, keeping its KV cache and the logits of its last token (they
    predict o_1); then the completions, `bucket` rows of similar length at a
    time, each up to the longest in its bucket, attending to their prompts'
    cache rows, the last token left out (it predicts nothing). Same positions and
    masks as one pass over the padded prompt + completion, so the same log-probs
    up to floating-point rounding, at a fraction of the tokens. Gradients flow
    through both parts (rows are copied with `index_select`, whose backward sums
    the copies; plain indexing's backward is far slower on CPU).
    """
    device = next(model.parameters()).device
    prompt = slice(batch.prompt_len - int(batch.attention_mask[:, : batch.prompt_len].sum(1).max()), batch.prompt_len)
    keys = torch.cat([batch.input_ids[:, prompt], batch.attention_mask[:, prompt]], dim=1)  # (N, 2P')
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)  # (N,) row -> distinct prompt
    n = len(inverse)
    first = torch.full((int(inverse.max()) + 1,), n, device=inverse.device).scatter_reduce(
        0, inverse, torch.arange(n, device=inverse.device), "amin")  # (U,)
    rows = lambda t: t[first, prompt].to(device)  # noqa: E731  (U, P') one row per distinct prompt
    out = model(input_ids=rows(batch.input_ids), attention_mask=rows(batch.attention_mask),
                position_ids=rows(batch.position_ids), use_cache=True, logits_to_keep=1)
    prompt_logits = out.logits[:, -1]  # (U, V) predicting o_1
    prompt_kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]  # (U, heads, P', d) each
    order = torch.argsort(batch.completion_mask.sum(1), stable=True)  # rows by completion length
    parts = [_completion_logprobs(model, batch, part, inverse[part].to(device), prompt.start, prompt_logits, prompt_kv,
                                  temperature, entropy) for part in order.split(bucket)]
    back = torch.argsort(order).to(device)  # (N,) batch order
    if entropy:
        logp, ent = zip(*parts)
        return torch.cat(logp).index_select(0, back), torch.cat(ent).index_select(0, back)  # (N, T) each
    return torch.cat(parts).index_select(0, back)  # (N, T) in batch order


def _completion_logprobs(model: PreTrainedModel, batch: PackedBatch, part: torch.Tensor, prompt_of: torch.Tensor,
                         start: int, prompt_logits: torch.Tensor, prompt_kv: list[tuple[torch.Tensor, torch.Tensor]],
                         temperature: float, entropy: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """token_logprobs of the rows `part` (prompt `prompt_of`), given their prompts' last logits and KV -> (n, T)
    (with entropy: and their entropies, (n, T))."""
    device = prompt_logits.device
    t_len = batch.completion_ids.shape[1]
    t_used = int(batch.completion_mask[part].sum(1).max().clamp(min=1))  # T' <= T: the longest completion here
    logits = prompt_logits.index_select(0, prompt_of).unsqueeze(1)  # (n, 1, V)
    if t_used > 1:
        cache = DynamicCache([(k.index_select(0, prompt_of), v.index_select(0, prompt_of)) for k, v in prompt_kv])
        span = slice(batch.prompt_len, batch.prompt_len + t_used - 1)
        rest = model(input_ids=batch.input_ids[part, span].to(device),
                     attention_mask=batch.attention_mask[part, start : span.stop].to(device),
                     position_ids=batch.position_ids[part, span].to(device), past_key_values=cache, use_cache=True)
        logits = torch.cat([logits, rest.logits], dim=1)  # (n, T', V)
    logp = sampled_logprobs(logits, batch.completion_ids[part, :t_used].to(device), temperature)  # (n, T')
    pad = lambda t: torch.nn.functional.pad(t, (0, t_len - t_used))  # noqa: E731  (n, T): 0 past the longest here
    if entropy:
        return pad(logp), pad(sampled_entropy(logits, temperature))
    return pad(logp)


def completion_logprobs(logits: torch.Tensor, completion_ids: torch.Tensor, prompt_len: int,
                        temperature: float = 1.0) -> torch.Tensor:
    """Log-probs of the completion tokens from a forward pass over prompt + completion.

    logits (N, P+T, V) with P = prompt_len; completion_ids (N, T) -> (N, T):
    log softmax(logits[P+t-1] / temperature)[o_t], position P+t-1 predicting token t.
    """
    return sampled_logprobs(logits[:, prompt_len - 1 : -1, :], completion_ids, temperature)


def sampled_logprobs(logits: torch.Tensor, token_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits[:, t] / temperature)[token_ids[:, t]]: logits (N, T, V) aligned with token_ids (N, T) -> (N, T)."""
    scaled = logits.float() / temperature  # (N, T, V)
    return torch.log_softmax(scaled, dim=-1).gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)  # (N, T)


@torch.no_grad()
def sampled_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """H = -sum_v p_v log p_v of softmax(logits / temperature): logits (N, T, V) -> (N, T), no gradient."""
    logq = torch.log_softmax(logits.float() / temperature, dim=-1)  # (N, T, V)
    return -(logq.exp() * logq).sum(-1)  # (N, T)
